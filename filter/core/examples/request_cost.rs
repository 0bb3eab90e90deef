//! The core's per-request work on `make bench` case 5's request, natively, to count
//! instructions (robust on a busy machine, unlike time): `valgrind --tool=callgrind
//! target/release/examples/request_cost FILTER_JSON PART N` with PART one of `none`, `decide`,
//! `normalize`, `log`, `edits` (FILTER_JSON: the `filter.json` `egressctl compile` wrote).
use egress_core::engine::{Decision, Engine};
use egress_core::plan::{wire, FilterConfig};
use std::error::Error;

const USAGE: &str = "usage: request_cost FILTER_JSON none|decide|normalize|log|edits N";

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, part, n] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let config: FilterConfig = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let engine = Engine::new(&config)?;
    let n: usize = n.parse()?;
    let names = [
        ":authority",
        ":path",
        ":method",
        ":scheme",
        "x-forwarded-proto",
    ];
    let Decision::Forward(fwd) = engine.decide("GET", "/egress/api/v1/items/42") else {
        return Err("the config does not forward GET /egress/api/v1/items/42 (case 5's)".into());
    };
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match part.as_str() {
            "none" => std::hint::black_box(1),
            "decide" => match engine.decide("GET", std::hint::black_box("/egress/api/v1/items/42"))
            {
                Decision::Forward(f) => f.path.len(),
                _ => 0,
            },
            "normalize" => egress_core::routing::path::normalize_request_path(
                std::hint::black_box("/egress/api/v1/items/42"),
            )
            .map_or(0, |p| p.path.len()),
            "log" => wire::log_fragment("api", "GET", &fwd.original_path, &fwd.target_url).len(),
            "edits" => engine
                .header_edit_list(&fwd, names.iter().copied(), None)
                .0
                .set
                .len(),
            _ => return Err(USAGE.into()),
        };
    }
    println!("{sink}");
    Ok(())
}
