//! `card show ICCID` and `card usage ICCID (--month | --day)`: one card looked up by hand.
//! (`card network` lives in [`crate::network`].)

use crate::output::{
    OutputFormat, Table, bytes_json, human_kb, num, opt_cell, print_json, print_stdout, text,
};
use crate::pool::usage_of;
use crate::{CardCommand, Ctx, Failure, Period};
use serde_json::{Value, json};
use tibiot_api::{BillingMethod, CardDetail, CardStatus, Query, Subject};

pub async fn run(ctx: Ctx, cmd: CardCommand) -> Result<(), Failure> {
    match cmd {
        CardCommand::Show { iccid } => show(&ctx, &iccid).await,
        CardCommand::Usage { iccid, period } => usage(&ctx, &iccid, period.period()?).await,
        CardCommand::Network(_) => Err(Failure::Runtime(
            "card network is dispatched elsewhere".into(),
        )),
    }
}

fn check_iccid(iccid: &str) -> Result<&str, Failure> {
    let iccid = iccid.trim();
    if iccid.is_empty() || iccid.chars().any(char::is_control) {
        return Err(Failure::Usage(format!(
            "{} is not an ICCID",
            tibiot_exporter::config::excerpt(iccid)
        )));
    }
    Ok(iccid)
}

async fn show(ctx: &Ctx, iccid: &str) -> Result<(), Failure> {
    let iccid = check_iccid(iccid)?;
    let d = ctx
        .client
        .get(Query::card_detail(iccid), ctx.deadline())
        .await
        .map_err(|e| ctx.api_failure(&format!("card {iccid}"), &e))?;
    match ctx.output {
        OutputFormat::Json => print_json(&card_json(&ctx.account.name, iccid, &d)),
        OutputFormat::Table => print_stdout(&card_table(iccid, &d)),
    }
    Ok(())
}

/// Capacity in KB, absent for usage-billed cards (the API does not use the field there).
fn capacity_kb(d: &CardDetail) -> Option<f64> {
    if d.billing_method == Some(BillingMethod::Usage.code()) {
        None
    } else {
        d.total_flow
    }
}

/// The JSON document of `card show`.
pub fn card_json(account: &str, iccid: &str, d: &CardDetail) -> Value {
    let capacity = capacity_kb(d);
    json!({
        "account": account,
        "iccid": d.iccid.as_deref().unwrap_or(iccid),
        "imsi": text(d.imsi.as_deref()),
        "msisdn": text(d.msisdn.as_deref()),
        "imei": text(d.imei.as_deref()),
        "apn": text(d.apn.as_deref()),
        "status": d.card_status.map(|s| CardStatus::label(s).into_owned()),
        "status_code": d.card_status,
        "billing_method": d.billing_method.map(|b| BillingMethod::label(b).into_owned()),
        "billing_method_code": d.billing_method,
        "cycle_usage_kb": num(d.use_flow),
        "cycle_usage_bytes": bytes_json(d.use_flow),
        "month_usage_kb": num(d.use_month_flow),
        "month_usage_bytes": bytes_json(d.use_month_flow),
        "capacity_kb": num(capacity),
        "capacity_bytes": bytes_json(capacity),
    })
}

/// The table of `card show`.
pub fn card_table(iccid: &str, d: &CardDetail) -> String {
    let mut t = Table::new(&[]);
    t.row(["iccid", d.iccid.as_deref().unwrap_or(iccid)]);
    t.row(["imsi".into(), opt_cell(d.imsi.as_deref())]);
    t.row(["msisdn".into(), opt_cell(d.msisdn.as_deref())]);
    t.row(["imei".into(), opt_cell(d.imei.as_deref())]);
    t.row(["apn".into(), opt_cell(d.apn.as_deref())]);
    t.row([
        "status".to_owned(),
        d.card_status
            .map(|c| CardStatus::label(c).into_owned())
            .unwrap_or_else(|| "-".into()),
    ]);
    t.row([
        "billing_method".to_owned(),
        d.billing_method
            .map(|c| BillingMethod::label(c).into_owned())
            .unwrap_or_else(|| "-".into()),
    ]);
    t.row(["cycle_usage".to_owned(), human_kb(d.use_flow)]);
    t.row(["month_usage".to_owned(), human_kb(d.use_month_flow)]);
    let cap = if d.billing_method == Some(BillingMethod::Usage.code()) {
        "- (usage billed)".to_owned()
    } else {
        human_kb(capacity_kb(d))
    };
    t.row(["capacity".to_owned(), cap]);
    t.render()
}

async fn usage(ctx: &Ctx, iccid: &str, period: Period) -> Result<(), Failure> {
    let iccid = check_iccid(iccid)?;
    usage_of(ctx, Subject::Card, iccid, period).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_names_and_units() {
        let d = CardDetail {
            card_status: Some(16),
            billing_method: Some(2),
            total_flow: Some(10.0),
            use_flow: Some(1024.0),
            ..Default::default()
        };
        let v = card_json("main", "8986", &d);
        assert_eq!(v["status"], "shutdown_protection");
        assert_eq!(v["billing_method"], "usage");
        assert_eq!(v["capacity_kb"], Value::Null);
        assert_eq!(v["cycle_usage_bytes"], 1048576);
        let t = card_table("8986", &d);
        assert!(t.contains("1.00 MiB"), "{t}");
        assert!(t.contains("shutdown_protection"));
    }
}
