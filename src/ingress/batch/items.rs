//! A Batch API item seen from the job runner: which batch it belongs to, whether it may
//! run, and its output line.

use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_actors::pipeline::Failure;
use switchyard_actors::GatewayError;

use super::{read_batch, BatchRecord};

/// The batch a job belongs to (`{"batch": {"id", "custom_id"}}` in the job): its output
/// line goes to the batch, not to `<prefix>.v1.results.<id>`.
#[derive(Deserialize, Clone, Debug)]
pub struct BatchRef {
    pub id: String,
    pub custom_id: String,
}

/// Why a batch item is not run now.
pub enum Gate {
    /// The batch record could not be read: try again later.
    Later,
    /// The batch has ended or was cancelled: an error line, no call.
    Skip(Failure),
    /// No such batch, or another key's: a plain failed result, no call.
    Foreign(Failure),
}

/// The record of the batch an item names (its owner, a JWT owner's team, its item key),
/// whatever its status: the caller first makes sure the item is the batch's, then asks
/// [`live`] whether it may run.
pub async fn gate(batches: &async_nats::jetstream::kv::Store, b: &BatchRef) -> Result<BatchRecord, Gate> {
    match read_batch(batches, &b.id).await {
        Err(e) => {
            tracing::warn!(batch = %b.id, error = %e, "cannot read a batch record; retrying later");
            Err(Gate::Later)
        }
        Ok(None) => Err(foreign(b)),
        Ok(Some((rec, _))) => Ok(rec),
    }
}

/// Not an item of that batch: answered like a plain job, no batch is touched.
pub fn foreign(b: &BatchRef) -> Gate {
    Gate::Foreign(Failure::from(GatewayError::Missing(format!("no batch `{}`", b.id))))
}

/// An item of `rec` runs only while the batch is live; otherwise it gets an error line.
pub fn live(rec: &BatchRecord) -> Result<(), Gate> {
    if rec.status.serves_items() {
        Ok(())
    } else {
        let e = GatewayError::Cancelled(format!("batch `{}` is {}", rec.id, json!(rec.status)));
        Err(Gate::Skip(Failure::from(e)))
    }
}

/// A batch item's output line, in OpenAI's batch output format.
pub fn output_line(id: &str, b: &BatchRef, answer: &Result<Value, &Failure>) -> Value {
    match answer {
        Ok(response) => json!({"id": format!("batch_req_{id}"), "custom_id": b.custom_id,
            "response": {"status_code": 200, "request_id": id, "body": response}, "error": null}),
        Err(f) if matches!(f.error, GatewayError::Cancelled(_)) => {
            json!({"id": format!("batch_req_{id}"), "custom_id": b.custom_id, "response": null,
                "error": {"code": f.error.class().code, "message": f.error.to_string()}})
        }
        Err(f) => json!({"id": format!("batch_req_{id}"), "custom_id": b.custom_id,
            "response": {"status_code": f.error.class().status, "request_id": id, "body": f.error.body()},
            "error": null}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_follow_openais_batch_format() {
        let b = BatchRef { id: "batch_1".into(), custom_id: "c-1".into() };
        let ok = output_line("batch_1-0", &b, &Ok(json!({"object": "chat.completion"})));
        assert_eq!(ok["custom_id"], "c-1");
        assert_eq!(ok["response"]["status_code"], 200);
        assert_eq!(ok["response"]["body"]["object"], "chat.completion");
        assert!(ok["error"].is_null());
        let f = Failure::from(GatewayError::UnknownModel("m".into()));
        let err = output_line("batch_1-1", &b, &Err(&f));
        assert_eq!(err["response"]["status_code"], 404);
        assert_eq!(err["response"]["body"]["error"]["code"], "model_not_found");
        let c = Failure::from(GatewayError::Cancelled("batch `batch_1` is \"cancelling\"".into()));
        let cancelled = output_line("batch_1-2", &b, &Err(&c));
        assert!(cancelled["response"].is_null());
        assert_eq!(cancelled["error"]["code"], "batch_cancelled");
    }
}
