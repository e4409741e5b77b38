//! What runs each convolution, chosen once per node, input shape and pass and kept: which of
//! the algorithms cuDNN's heuristics rank first (the fastest when each is timed on the step's
//! own buffers), and for a depthwise convolution, cuDNN or deepdream's own kernels.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use cudarc::cudnn::sys as cudnn_sys;

use super::windows::{Precision, Window};
use crate::backend::cuda::cudnn::{ConvDesc, check, failed};
use crate::backend::graph::Shape;
use crate::error::Result;

/// The most workspace one convolution may take.
const MAX_WORKSPACE: usize = 1 << 30;

/// The most workspace an algorithm may take to be timed after the heuristics' first one (the
/// kept image's workspace grows to the largest it tried).
const TIMED_WORKSPACE: usize = 1 << 28;

/// How many of the heuristics' algorithms are timed.
pub(super) const TIMED_CANDIDATES: usize = 3;

/// How many times each candidate runs when timed, after one run to warm it up.
pub(super) const TIMED_RUNS: usize = 3;

/// How depthwise convolutions (one filter per channel, as in EfficientNet) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depthwise {
    /// By whichever of cuDNN and deepdream's own kernels was faster, each timed on the step's
    /// own buffers when its shape first runs (the default).
    Fastest,
    /// By cuDNN, as a grouped convolution.
    Cudnn,
    /// By deepdream's own kernels.
    Own,
}

/// Prints each timed choice (cuDNN's algorithms, cuDNN or deepdream's own kernels) when `1`.
pub const CHOICES_VARIABLE: &str = "DEEPDREAM_CUDA_CHOICES";

/// Whether the timed choices are printed.
pub(super) fn print_choices() -> bool {
    std::env::var(CHOICES_VARIABLE).is_ok_and(|v| v == "1")
}

/// The pass of a gradient a step runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Pass {
    Forward,
    Backward,
}

/// What runs a step: cuDNN (or whatever runs the operation in general), or deepdream's own
/// depthwise kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Cudnn,
    Own,
}

/// A convolution algorithm of either pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Algorithm {
    Forward(cudnn_sys::cudnnConvolutionFwdAlgo_t),
    BackwardData(cudnn_sys::cudnnConvolutionBwdDataAlgo_t),
}

/// An algorithm cuDNN offers for a convolution, the workspace it needs, and the math type
/// cuDNN offers it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Choice {
    pub(super) algorithm: Algorithm,
    pub(super) workspace: usize,
    pub(super) math: cudnn_sys::cudnnMathType_t,
}

/// A step's node, its input's shape as cuDNN reads it, and the pass.
pub(super) type Key = (usize, Shape, Pass);

/// The choices made for one graph, kept for every later step.
pub(super) struct Choices {
    pub(super) convolutions: HashMap<Key, Choice>,
    pub(super) depthwise: HashMap<Key, Route>,
    /// The choices timed in earlier runs.
    pub(super) remembered: Remembered,
}

impl Choices {
    /// No choices yet, those of earlier runs in `remembered`.
    pub(super) fn new(remembered: Remembered) -> Self {
        Choices {
            convolutions: HashMap::new(),
            depthwise: HashMap::new(),
            remembered,
        }
    }
}

/// The file in the GPU cache that remembers timed choices across runs.
pub const REMEMBERED_FILE: &str = "cudnn-choices.txt";

/// The choices timed in earlier runs, kept in a file of the GPU cache (one `key<TAB>choice`
/// line each, the last line of a key counting), so that a later process on the same GPU, cuDNN
/// and precision runs what was fastest without timing it again: each key names the GPU, cuDNN's
/// version, the precision, the pass and what the step computes ([`Remembered::key`]). A
/// remembered algorithm is still only taken if cuDNN offers it for the convolution. The cache is
/// a help only: a file that cannot be read or written leaves the choices to be timed.
pub(super) struct Remembered {
    file: Option<PathBuf>,
    /// What every key starts with: the GPU, cuDNN's version and the precision.
    prefix: String,
    entries: HashMap<String, String>,
}

impl Remembered {
    /// The choices in `file` (none where it is missing or unreadable) for the GPU and cuDNN
    /// that `gpu` names (its name and cuDNN's version) in `precision`; new ones are added to
    /// it. Without a file, nothing is remembered.
    pub(super) fn open(file: Option<PathBuf>, gpu: &str, precision: Precision) -> Self {
        let bytes = file
            .as_ref()
            .and_then(|file| fs::read(file).ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let entries = text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Remembered {
            file,
            prefix: format!("{gpu} {precision:?}"),
            entries,
        }
    }

    /// The key of the choice in `pass` for a step that computes what `describes` says (a
    /// window's `describes`).
    pub(super) fn key(&self, describes: &str, pass: Pass) -> String {
        format!("{} {pass:?} {describes}", self.prefix)
    }

    /// The choice remembered for `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Remembers `choice` for `key`, in this run and (best effort) in the file.
    pub(super) fn remember(&mut self, key: String, choice: String) {
        if let Some(file) = &self.file {
            let line = format!("{key}\t{choice}\n");
            let appended = file
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|_| {
                    // One write of a short line: appends of several processes do not interleave.
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(file)
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                });
            if let Err(error) = appended {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    eprintln!(
                        "deepdream: cannot remember cuDNN's choices in {} ({error}); they are timed again in each run",
                        file.display()
                    )
                });
            }
        }
        self.entries.insert(key, choice);
    }
}

/// A choice as it is remembered: the algorithm's name.
pub(super) fn remembered_name(choice: &Choice) -> String {
    format!("{:?}", choice.algorithm)
}

/// A route as it is remembered.
pub(super) fn route_name(route: Route) -> &'static str {
    match route {
        Route::Cudnn => "cuDNN",
        Route::Own => "own",
    }
}

/// The route remembered as `name`.
pub(super) fn route_named(name: &str) -> Option<Route> {
    [Route::Cudnn, Route::Own]
        .into_iter()
        .find(|&route| route_name(route) == name)
}

/// The algorithms cuDNN's heuristics offer for `window`'s convolution in `pass` that work
/// within the workspace allowed, best ranked first: the first, and up to
/// [`TIMED_CANDIDATES`] in all of those within [`TIMED_WORKSPACE`]. An error if none works.
pub(super) fn candidates(
    handle: cudnn_sys::cudnnHandle_t,
    window: &Window,
    pass: Pass,
) -> Result<Vec<Choice>> {
    const ASKED: usize = 8;
    let conv = window.conv();
    let mut returned = 0;
    let offered: Vec<(cudnn_sys::cudnnStatus_t, Choice)> = match pass {
        Pass::Forward => {
            // SAFETY: an array of plain structs cuDNN fills; zero is a valid bit pattern.
            let mut results: [cudnn_sys::cudnnConvolutionFwdAlgoPerf_t; ASKED] =
                unsafe { std::mem::zeroed() };
            // SAFETY: the descriptors are alive; `results` holds ASKED entries.
            check("choose a convolution algorithm", unsafe {
                cudnn_sys::cudnnGetConvolutionForwardAlgorithm_v7(
                    handle,
                    window.x.0,
                    conv.filter,
                    conv.conv,
                    window.y.0,
                    ASKED as i32,
                    &mut returned,
                    results.as_mut_ptr(),
                )
            })?;
            results[..returned as usize]
                .iter()
                .map(|r| {
                    (
                        r.status,
                        choice(Algorithm::Forward(r.algo), r.memory, r.mathType),
                    )
                })
                .collect()
        }
        Pass::Backward => {
            // SAFETY: as above.
            let mut results: [cudnn_sys::cudnnConvolutionBwdDataAlgoPerf_t; ASKED] =
                unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            check("choose a backward convolution algorithm", unsafe {
                cudnn_sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    handle,
                    conv.filter,
                    window.y.0,
                    conv.conv,
                    window.x.0,
                    ASKED as i32,
                    &mut returned,
                    results.as_mut_ptr(),
                )
            })?;
            results[..returned as usize]
                .iter()
                .map(|r| {
                    let algorithm = Algorithm::BackwardData(r.algo);
                    (r.status, choice(algorithm, r.memory, r.mathType))
                })
                .collect()
        }
    };
    let usable = usable(offered);
    if usable.is_empty() {
        let what = match pass {
            Pass::Forward => "find a convolution algorithm",
            Pass::Backward => "find a backward convolution algorithm",
        };
        return Err(failed(
            what,
            cudnn_sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
        ));
    }
    Ok(usable)
}

fn choice(algorithm: Algorithm, workspace: usize, math: cudnn_sys::cudnnMathType_t) -> Choice {
    Choice {
        algorithm,
        workspace,
        math,
    }
}

/// Of cuDNN's offers (status and choice, best first), those worth running: the first that
/// works within [`MAX_WORKSPACE`], then up to [`TIMED_CANDIDATES`] in all of the working
/// ones after it within [`TIMED_WORKSPACE`].
fn usable(offered: Vec<(cudnn_sys::cudnnStatus_t, Choice)>) -> Vec<Choice> {
    let mut working = offered
        .into_iter()
        .filter(|(status, _)| *status == cudnn_sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS)
        .map(|(_, choice)| choice);
    let Some(first) = working.find(|c| c.workspace <= MAX_WORKSPACE) else {
        return Vec::new();
    };
    let mut usable = vec![first];
    for choice in working.filter(|c| c.workspace <= TIMED_WORKSPACE) {
        if usable.len() == TIMED_CANDIDATES {
            break;
        }
        // cuDNN may offer an algorithm again with another math type.
        if usable.iter().all(|c| c.algorithm != choice.algorithm) {
            usable.push(choice);
        }
    }
    usable
}

/// In TF32 a convolution runs with the math type cuDNN offered its algorithm with; in fp32 the
/// descriptor keeps `CUDNN_FMA_MATH` (cuDNN's default math allows TF32 on Ampere and later).
pub(super) fn use_math(
    conv: &ConvDesc,
    math: cudnn_sys::cudnnMathType_t,
    tf32: bool,
) -> Result<()> {
    if !tf32 {
        return Ok(());
    }
    // SAFETY: the descriptor is alive.
    check("set the math type", unsafe {
        cudnn_sys::cudnnSetConvolutionMathType(conv.conv, math)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudnn_sys::cudnnConvolutionFwdAlgo_t as Fwd;
    use cudnn_sys::cudnnMathType_t::CUDNN_DEFAULT_MATH;
    use cudnn_sys::cudnnStatus_t::{CUDNN_STATUS_NOT_SUPPORTED, CUDNN_STATUS_SUCCESS};

    fn offer(
        status: cudnn_sys::cudnnStatus_t,
        algo: Fwd,
        workspace: usize,
    ) -> (cudnn_sys::cudnnStatus_t, Choice) {
        (
            status,
            choice(Algorithm::Forward(algo), workspace, CUDNN_DEFAULT_MATH),
        )
    }

    /// The first working offer within the workspace allowed is always run; those timed beside
    /// it work, take a modest workspace, are other algorithms and are at most three in all.
    #[test]
    fn candidates_are_the_first_working_offer_and_a_few_modest_ones() {
        let offers = vec![
            offer(
                CUDNN_STATUS_NOT_SUPPORTED,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
                0,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
                MAX_WORKSPACE + 1,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
                MAX_WORKSPACE,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                TIMED_WORKSPACE + 1,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                0,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
                0,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                1 << 20,
            ),
            offer(
                CUDNN_STATUS_SUCCESS,
                Fwd::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
                0,
            ),
        ];
        let algorithms: Vec<Algorithm> = usable(offers).iter().map(|c| c.algorithm).collect();
        assert_eq!(
            algorithms,
            [
                Algorithm::Forward(Fwd::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING),
                Algorithm::Forward(Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM),
                Algorithm::Forward(Fwd::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
            ]
        );
        let none = vec![offer(
            CUDNN_STATUS_NOT_SUPPORTED,
            Fwd::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
            0,
        )];
        assert!(usable(none).is_empty());
    }
}

#[cfg(test)]
mod remembered_tests {
    use super::*;

    const GPU: &str = "NVIDIA H200 (compute 9.0) cuDNN 91300";

    #[test]
    fn choices_are_remembered_across_runs_per_gpu_precision_pass_and_step() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpu").join(REMEMBERED_FILE);
        let step = "convolution ConvGeometry { .. } on 64x224x224";

        let mut first = Remembered::open(Some(file.clone()), GPU, Precision::Tf32);
        let key = first.key(step, Pass::Forward);
        assert_eq!(first.get(&key), None);
        first.remember(key.clone(), "Forward(ALGO_A)".into());
        assert_eq!(first.get(&key), Some("Forward(ALGO_A)"));
        first.remember(
            first.key(step, Pass::Backward),
            route_name(Route::Own).into(),
        );

        // A later run reads them back; the last line of a key counts.
        let mut later = Remembered::open(Some(file.clone()), GPU, Precision::Tf32);
        assert_eq!(later.get(&key), Some("Forward(ALGO_A)"));
        let backward = later.key(step, Pass::Backward);
        assert_eq!(later.get(&backward).and_then(route_named), Some(Route::Own));
        later.remember(key.clone(), "Forward(ALGO_B)".into());
        let again = Remembered::open(Some(file.clone()), GPU, Precision::Tf32);
        assert_eq!(again.get(&key), Some("Forward(ALGO_B)"));

        // Another GPU, precision or step has choices of its own.
        let other_gpu = Remembered::open(Some(file.clone()), "NVIDIA H100", Precision::Tf32);
        assert_eq!(other_gpu.get(&other_gpu.key(step, Pass::Forward)), None);
        let fp32 = Remembered::open(Some(file.clone()), GPU, Precision::Fp32);
        assert_eq!(fp32.get(&fp32.key(step, Pass::Forward)), None);
        assert_eq!(again.get(&again.key("on 64x112x112", Pass::Forward)), None);
    }

    #[test]
    fn a_damaged_or_unwritable_file_only_means_timing_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(REMEMBERED_FILE);
        let kept = Remembered::open(None, GPU, Precision::Tf32).key("kept", Pass::Forward);
        let damaged = [
            &b"no tab here\n\xff\xfe\tbinary\n"[..],
            kept.as_bytes(),
            b"\tAlgo\n",
        ];
        fs::write(&file, damaged.concat()).unwrap();
        let mut remembered = Remembered::open(Some(file.clone()), GPU, Precision::Tf32);
        assert_eq!(
            remembered.get(&kept),
            Some("Algo"),
            "the good lines are read"
        );
        let key = remembered.key("a step", Pass::Forward);
        assert_eq!(remembered.get(&key), None);
        remembered.remember(key.clone(), "Forward(ALGO_A)".into());
        assert_eq!(remembered.get(&key), Some("Forward(ALGO_A)"));

        // A file where a folder must be: nothing is written, the run still remembers.
        let blocked = dir.path().join(REMEMBERED_FILE).join("cache.txt");
        let mut remembered = Remembered::open(Some(blocked.clone()), GPU, Precision::Tf32);
        let key = remembered.key("a step", Pass::Forward);
        remembered.remember(key.clone(), "Forward(ALGO_A)".into());
        assert_eq!(remembered.get(&key), Some("Forward(ALGO_A)"));
        assert!(!blocked.exists());

        let nothing = Remembered::open(None, GPU, Precision::Tf32);
        assert_eq!(nothing.get(&key), None);
    }

    #[test]
    fn routes_read_back_by_name() {
        for route in [Route::Cudnn, Route::Own] {
            assert_eq!(route_named(route_name(route)), Some(route));
        }
        assert_eq!(route_named("fastest"), None);
    }
}
