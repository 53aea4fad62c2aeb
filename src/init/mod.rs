//! `trailsetup init`: wizard → plan → confirm → apply. (Being built: see issue 2.)

use crate::cli::InitArgs;
use crate::error::Exit;
use crate::output::Output;
use crate::settings::Common;

pub async fn run(_common: &Common, _args: &InitArgs, _out: &Output) -> anyhow::Result<Exit> {
    anyhow::bail!("init is not built yet")
}
