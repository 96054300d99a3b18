//! `-eN` / `-editName NAME`: changes this device's display name (2–15 characters).

use super::{check_own_name, AppError, Context};
use crate::store::Identity;
use socketfalco_core::DeviceId;

/// Validates and stores the new name, reporting old → new. Like every command that opens the
/// data directory, it also makes sure this device has its key (first start-up, migration).
pub fn run(ctx: &Context, name: &str) -> Result<(), AppError> {
    // The name as typed, shown with its escapes spelled out: never sent to the terminal raw.
    let shown = name.escape_debug();
    check_own_name(name).map_err(|e| AppError::new(format!("invalid name \"{shown}\": {e}")))?;
    let mut db = ctx.open_database()?;
    match db.identity()? {
        Some(Identity { name: old, .. }) => {
            crate::keys::load_or_create(&ctx.data_dir)?;
            db.rename(name)?;
            outln!("name changed: {old} → {name}")?;
        }
        None => {
            super::refuse_a_key_without_its_device(ctx, &db)?;
            let device = DeviceId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
            db.create_identity(device, name)?;
            let keypair = crate::keys::load_or_create(&ctx.data_dir)?;
            outln!(
                "this device is {device}, named {name}, key fingerprint {}",
                keypair.public().fingerprint()
            )?;
        }
    }
    Ok(())
}
