//! canary's kernel data path: an ingress program that splits new flows
//! between a service's stable and canary backends and rewrites their
//! destination (at XDP, or at TC ingress for virtual interfaces), and a TC
//! (tcx) egress program that rewrites replies back to the service address.
//! Everything they share lives in BPF maps (`maps`).
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
mod h2;
mod hook;
mod ingress;
mod maps;
mod parse;
mod signals;
mod tables;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use canary_common::{TAIL_EGRESS_H2, verdict::Action};

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

/// TC (tcx) ingress entry: the same ingress logic at the hook that costs
/// less on virtual interfaces (native XDP on veth copies every cloned skb it
/// is given). Counted in the same tables as `canary_ingress`; a drop is
/// TC_ACT_SHOT. An interface runs one of the two (`hook` in the config).
#[classifier]
pub fn canary_ingress_tc(ctx: TcContext) -> i32 {
    hook::pull_headers(&ctx);
    let v = match ingress::try_ingress(&ctx) {
        Ok(translated) => translated,
        Err(odd) => odd,
    };
    counters::count_ingress(v);
    match v.action() {
        Action::Drop => TC_ACT_SHOT,
        Action::Pass | Action::Translated => TC_ACT_OK,
    }
}

/// TC egress entry: replies are never dropped here (`try_egress` turns the
/// verdicts whose action is a drop into a pass); anything we cannot or
/// should not translate leaves as it is, counted.
#[classifier]
pub fn canary_egress(ctx: TcContext) -> i32 {
    let mut h2 = false;
    let v = match egress::try_egress(&ctx, &mut h2) {
        Ok(translated) => translated,
        Err(odd) => odd,
    };
    counters::count_egress(v);
    if h2 {
        // SAFETY: the context is this program's own; the slot holds
        // `canary_egress_h2`, a classifier like this one. If it is empty
        // (not loaded yet) the call returns and the reply passes unread.
        unsafe { maps::TAIL_CALLS.tail_call(&ctx, TAIL_EGRESS_H2) };
    }
    TC_ACT_OK
}

/// TC egress, tail-called by `canary_egress` for a reply of an HTTP/2
/// connection (or one that may become one): walks its frames (`h2`) with
/// a fresh 512-byte stack. Never attached itself; userspace puts it in
/// TAIL_CALLS.
#[classifier]
pub fn canary_egress_h2(ctx: TcContext) -> i32 {
    hook::pull_headers(&ctx);
    egress::h2_reply(&ctx);
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
