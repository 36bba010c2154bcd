//! The quota service's `Greylist` RPC: one greylisting op run on the backing state (Redis in
//! production), atomically on its client network's record.

use crate::error::ServiceError;
use crate::service::QuotaService;
use sluice_engine::GreylistOp;
use sluice_proto::v1::{GreylistReply, GreylistRequest};

impl QuotaService {
    /// Runs one greylisting op (in its own task, bounded by the apply timeout).
    pub async fn run_greylist(
        &self,
        request: GreylistRequest,
    ) -> Result<GreylistReply, ServiceError> {
        let op = GreylistOp::try_from(request)?;
        let reply = self
            .run_task(move |state| Box::pin(async move { state.greylist(&op).await }))
            .await?;
        Ok((&reply).into())
    }
}
