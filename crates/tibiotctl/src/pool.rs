//! `pool show CODE` and `pool usage CODE (--month | --day)`: one flow pool looked up by hand,
//! printed as a key/value table or as JSON.

use crate::output::{
    OutputFormat, Table, bytes_json, human_kb, num, opt_cell, plain, print_json, print_stdout, text,
};
use crate::{Ctx, Failure, Period, PoolCommand};
use serde_json::{Value, json};
use tibiot_api::calendar::format_day;
use tibiot_api::{CardStatus, PoolDetail, PoolStatus, PoolType, Query, Subject};

pub async fn run(ctx: Ctx, cmd: PoolCommand) -> Result<(), Failure> {
    match cmd {
        PoolCommand::Show { code } => show(&ctx, &code).await,
        PoolCommand::Usage { code, period } => usage(&ctx, &code, period.period()?).await,
    }
}

async fn show(ctx: &Ctx, code: &str) -> Result<(), Failure> {
    let code = code.trim();
    if code.is_empty() {
        return Err(Failure::Usage("the pool code is empty".into()));
    }
    let d = ctx
        .client
        .get(Query::pool_detail(code), ctx.deadline())
        .await
        .map_err(|e| ctx.api_failure(&format!("pool {code:?}"), &e))?;
    match ctx.output {
        OutputFormat::Json => print_json(&pool_json(&ctx.account.name, code, &d)),
        OutputFormat::Table => print_stdout(&pool_table(code, &d)),
    }
    Ok(())
}

/// Capacity in KB, absent for usage-billed pools (the API does not use the field there).
fn capacity_kb(d: &PoolDetail) -> Option<f64> {
    if d.pool_type == Some(PoolType::UsageBilled.code()) {
        None
    } else {
        d.total_flow
    }
}

fn used_percent(used: Option<f64>, capacity: Option<f64>) -> Option<f64> {
    match (used, capacity) {
        (Some(u), Some(c)) if c > 0.0 => Some((u / c * 1000.0).round() / 10.0),
        _ => None,
    }
}

/// The JSON document of `pool show`.
pub fn pool_json(account: &str, code: &str, d: &PoolDetail) -> Value {
    let capacity = capacity_kb(d);
    let pkg = d.package_info.as_ref();
    json!({
        "account": account,
        "pool": d.upool_code.as_deref().unwrap_or(code),
        "name": text(d.upool_name.as_deref()),
        "name_en": text(d.en_upool_name.as_deref()),
        "type": d.pool_type.map(|t| PoolType::label(t).into_owned()),
        "type_code": d.pool_type,
        "status": d.upool_status.map(|s| PoolStatus::label(s).into_owned()),
        "status_code": d.upool_status,
        "used_kb": num(d.use_flow),
        "used_bytes": bytes_json(d.use_flow),
        "capacity_kb": num(capacity),
        "capacity_bytes": bytes_json(capacity),
        "used_percent": num(used_percent(d.use_flow, capacity)),
        "cards": num(d.total_card),
        "billing_cycle_months": d.billing_cycle,
        "created": text(d.raw_add_time.as_deref()),
        "start": text(d.start_time.as_deref()),
        "end": text(d.end_time.as_deref()),
        "package": text(pkg.and_then(|p| p.client_flow_package_name.as_deref())),
        "package_type_code": pkg.and_then(|p| p.flow_package_type),
        "channel": text(pkg.and_then(|p| p.channel_name.as_deref())),
        "cards_by_status": d.bind_card_status_count.iter().map(|c| json!({
            "status": c.card_status.map(|s| CardStatus::label(s).into_owned()),
            "status_code": c.card_status,
            "cards": num(c.total),
        })).collect::<Vec<_>>(),
    })
}

/// The table of `pool show`.
pub fn pool_table(code: &str, d: &PoolDetail) -> String {
    let capacity = capacity_kb(d);
    let pkg = d.package_info.as_ref();
    let mut t = Table::new(&[]);
    t.row(["pool", d.upool_code.as_deref().unwrap_or(code)]);
    t.row(["name".into(), opt_cell(d.upool_name.as_deref())]);
    t.row(["name_en".into(), opt_cell(d.en_upool_name.as_deref())]);
    t.row([
        "type".to_owned(),
        d.pool_type
            .map(|c| PoolType::label(c).into_owned())
            .unwrap_or_else(|| "-".into()),
    ]);
    t.row([
        "status".to_owned(),
        d.upool_status
            .map(|c| PoolStatus::label(c).into_owned())
            .unwrap_or_else(|| "-".into()),
    ]);
    let used = match used_percent(d.use_flow, capacity) {
        Some(p) => format!("{} ({p}%)", human_kb(d.use_flow)),
        None => human_kb(d.use_flow),
    };
    t.row(["used".to_owned(), used]);
    let cap = if d.pool_type == Some(PoolType::UsageBilled.code()) {
        "- (usage billed)".to_owned()
    } else {
        human_kb(capacity)
    };
    t.row(["capacity".to_owned(), cap]);
    t.row(["cards".to_owned(), plain(d.total_card)]);
    t.row([
        "billing_cycle".to_owned(),
        d.billing_cycle
            .map(|m| format!("{m} months"))
            .unwrap_or_else(|| "-".into()),
    ]);
    t.row([
        "package".to_owned(),
        opt_cell(pkg.and_then(|p| p.client_flow_package_name.as_deref())),
    ]);
    t.row([
        "channel".to_owned(),
        opt_cell(pkg.and_then(|p| p.channel_name.as_deref())),
    ]);
    t.row(["created".to_owned(), opt_cell(d.raw_add_time.as_deref())]);
    t.row(["start".to_owned(), opt_cell(d.start_time.as_deref())]);
    t.row(["end".to_owned(), opt_cell(d.end_time.as_deref())]);
    let mut out = t.render();
    if !d.bind_card_status_count.is_empty() {
        let mut s = Table::new(&["CARD STATUS", "CARDS"]).right_align(&[1]);
        for c in &d.bind_card_status_count {
            s.row([
                c.card_status
                    .map(|s| CardStatus::label(s).into_owned())
                    .unwrap_or_else(|| "-".into()),
                plain(c.total),
            ]);
        }
        out.push('\n');
        out.push_str(&s.render());
    }
    out
}

async fn usage(ctx: &Ctx, code: &str, period: Period) -> Result<(), Failure> {
    let code = code.trim();
    if code.is_empty() {
        return Err(Failure::Usage("the pool code is empty".into()));
    }
    usage_of(ctx, Subject::Pool, code, period).await
}

/// `pool usage` and `card usage`: one day's or month's usage of a pool or card, printed.
pub async fn usage_of(
    ctx: &Ctx,
    subject: Subject,
    id: &str,
    period: Period,
) -> Result<(), Failure> {
    let (what, column) = match subject {
        Subject::Pool => (format!("pool {id:?}"), "pool"),
        Subject::Card => (format!("card {id}"), "iccid"),
    };
    let (key, label, query) = match period {
        Period::Month(m) => {
            let month = m.to_string();
            let q = Query::month_usage(subject, id, &month);
            ("month", month, q)
        }
        Period::Day(d) => {
            let day = format_day(d);
            let q = Query::day_usage(subject, id, &day);
            ("date", day, q)
        }
    };
    let prep = if key == "month" { "in" } else { "on" };
    let kb = ctx
        .client
        .get(query, ctx.deadline())
        .await
        .map_err(|e| ctx.api_failure(&format!("usage of {what} {prep} {label}"), &e))?;
    print_usage(ctx, column, id, key, &label, kb);
    Ok(())
}

/// Prints one usage value.
fn print_usage(ctx: &Ctx, kind: &str, target: &str, key: &str, period: &str, kb: Option<f64>) {
    match ctx.output {
        OutputFormat::Json => {
            let mut v = serde_json::Map::new();
            v.insert("account".into(), json!(ctx.account.name));
            v.insert(kind.into(), json!(target));
            v.insert(key.into(), json!(period));
            v.insert("usage_kb".into(), num(kb));
            v.insert("usage_bytes".into(), bytes_json(kb));
            print_json(&Value::Object(v));
        }
        OutputFormat::Table => {
            let mut t = Table::new(&[&kind.to_uppercase(), &key.to_uppercase(), "USAGE", "KB"])
                .right_align(&[2, 3]);
            t.row([
                target.to_owned(),
                period.to_owned(),
                human_kb(kb),
                plain(kb),
            ]);
            print_stdout(&t.render());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_billed_pools_have_no_capacity() {
        let d = PoolDetail {
            pool_type: Some(2),
            total_flow: Some(100.0),
            use_flow: Some(50.0),
            ..Default::default()
        };
        let v = pool_json("main", "P", &d);
        assert_eq!(v["capacity_bytes"], Value::Null);
        assert_eq!(v["type"], "usage_billed");
        assert_eq!(v["used_bytes"], 51200);
        assert!(pool_table("P", &d).contains("- (usage billed)"));
        let d = PoolDetail {
            pool_type: Some(1),
            ..d
        };
        assert_eq!(pool_json("main", "P", &d)["used_percent"], 50);
    }
}
