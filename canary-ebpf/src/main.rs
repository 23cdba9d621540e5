//! canary's kernel data path: an XDP ingress program that splits new flows
//! between a service's stable and canary backends and rewrites their
//! destination, and a TC (tcx) egress program that rewrites replies back to
//! the service address. Everything they share lives in BPF maps (`maps`).
#![no_std]
#![no_main]
// Every unsafe block says why it is sound; clippy holds new ones to that.
#![warn(clippy::undocumented_unsafe_blocks)]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys go by reference so 40-byte keys are not copied again on the 512-byte BPF stack"
)]

mod close;
mod counters;
mod decide;
mod egress;
mod ingress;
mod maps;
mod parse;
mod signals;
mod tables;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use canary_common::verdict::Action;

/// XDP entry: every packet comes back with one verdict (`Err` for the odd
/// cases), which is counted and answered with the action the verdict table
/// gives it.
#[xdp]
pub fn canary_ingress(ctx: XdpContext) -> u32 {
    let v = match ingress::try_ingress(&ctx) {
        Ok(translated) => translated,
        Err(odd) => odd,
    };
    counters::count_ingress(v);
    match v.action() {
        Action::Drop => xdp_action::XDP_DROP,
        Action::Pass | Action::Translated => xdp_action::XDP_PASS,
    }
}

/// TC egress entry: replies are never dropped here (`try_egress` turns the
/// verdicts whose action is a drop into a pass); anything we cannot or
/// should not translate leaves as it is, counted.
#[classifier]
pub fn canary_egress(ctx: TcContext) -> i32 {
    let v = match egress::try_egress(&ctx) {
        Ok(translated) => translated,
        Err(odd) => odd,
    };
    counters::count_egress(v);
    TC_ACT_OK
}

/// Benchmark floor for XDP: the cheapest program there is. `cargo xtask
/// bench` runs it beside `canary_ingress` with BPF_PROG_TEST_RUN so the data
/// path's cost is reported above the harness's own. Never attached.
#[xdp]
pub fn bench_floor_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark floor for TC, the same for `canary_egress`. Never attached.
#[classifier]
pub fn bench_floor_tc(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here; this only
    // satisfies no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
