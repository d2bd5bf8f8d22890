//! Fuzz target: an upstream response body, decoded the way the client does (envelope with raw
//! `data`, then the endpoint's model) and directly as every `Envelope<Model>`. Must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tibiot_api::*;

fn models(v: Value) {
    let _ = serde_json::from_value::<PoolDetail>(v.clone());
    let _ = serde_json::from_value::<PoolDayUsage>(v.clone());
    let _ = serde_json::from_value::<PoolMonthUsage>(v.clone());
    let _ = serde_json::from_value::<CardDetail>(v.clone());
    let _ = serde_json::from_value::<CardDayUsage>(v.clone());
    let _ = serde_json::from_value::<CardMonthUsage>(v.clone());
    let _ = serde_json::from_value::<NetworkResult>(v.clone());
    let _ = serde_json::from_value::<Vec<BatchCardStatus>>(v);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_json::from_slice::<Envelope<Value>>(data) {
        if let Some(d) = env.data {
            models(d);
        }
    }
    let _ = serde_json::from_slice::<Envelope<PoolDetail>>(data);
    let _ = serde_json::from_slice::<Envelope<CardDetail>>(data);
    let _ = serde_json::from_slice::<Envelope<PoolDayUsage>>(data);
    let _ = serde_json::from_slice::<Envelope<CardMonthUsage>>(data);
    let _ = serde_json::from_slice::<Envelope<NetworkResult>>(data);
});
