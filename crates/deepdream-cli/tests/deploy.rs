//! The files in `deploy/`, checked as far as this machine allows (no cluster or container
//! runtime here): the Kubernetes Job is parsed as YAML and its fields that matter checked,
//! the Slurm script is checked by bash and its `#SBATCH` lines read, the Dockerfile's stages
//! read; and the command each one runs is run for real on a few pictures, with the
//! scheduler's variables set the way the scheduler would set them.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

/// Three small pictures in `dir/frames`.
fn frames(dir: &Path) -> PathBuf {
    let photo = image::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deepdream/tests/fixtures/chelsea.png"),
    )
    .unwrap()
    .to_rgb8();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for k in 0..3u32 {
        image::imageops::crop_imm(&photo, k * 50, 30, 96, 96)
            .to_image()
            .save(frames.join(format!("frame{k:04}.png")))
            .unwrap();
    }
    frames
}

/// Runs `deepdream ARGS` with the fast model's weights and `env`; returns stderr.
fn run(dir: &Path, args: &[String], env: &[(&str, &str)]) -> String {
    let spec = deepdream::networks::models::find("efficientnet-lite0").unwrap();
    let weights = deepdream::networks::weights::ensure(spec, |_| {}).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_deepdream"));
    command
        .args(args)
        .args(["--model", "efficientnet-lite0", "--weights"])
        .arg(&weights)
        .args(["--octaves", "1", "--iterations", "1"])
        .current_dir(dir)
        .env("DEEPDREAM_HOME", dir);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{args:?}: {stderr}");
    stderr
}

fn text(yaml: &Yaml) -> String {
    match yaml {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn the_kubernetes_job_runs_one_share_per_index() {
    let source = std::fs::read_to_string(deploy("kubernetes-indexed-job.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&source).unwrap();
    let job = &docs[0];
    assert_eq!(text(&job["apiVersion"]), "batch/v1");
    assert_eq!(text(&job["kind"]), "Job");
    let spec = &job["spec"];
    assert_eq!(text(&spec["completionMode"]), "Indexed");
    let completions = spec["completions"].as_i64().unwrap();
    assert!(spec["parallelism"].as_i64().unwrap() <= completions);
    let pod = &spec["template"]["spec"];
    assert_eq!(text(&pod["restartPolicy"]), "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert!(text(&container["image"]).starts_with("deepdream"));
    let args: Vec<String> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let shards = args.iter().position(|a| a == "--shards").expect("--shards");
    assert_eq!(
        args[shards + 1],
        completions.to_string(),
        "--shards = completions"
    );
    let mount = text(&container["volumeMounts"][0]["mountPath"]);
    assert!(
        args.iter().any(|a| a.starts_with(&mount)),
        "paths on the volume"
    );

    // Every index, run with the Job's arguments (the volume mapped to a folder), together
    // dream each frame once.
    let dir = tempfile::tempdir().unwrap();
    frames(dir.path());
    let local: Vec<String> = args
        .iter()
        .map(|a| a.replacen(&format!("{mount}/"), "", 1))
        .collect();
    for index in 0..completions {
        let index = index.to_string();
        run(dir.path(), &local, &[("JOB_COMPLETION_INDEX", &index)]);
    }
    let dreams = std::fs::read_dir(dir.path().join("dreams"))
        .unwrap()
        .count();
    assert_eq!(dreams, 3);
}

#[test]
fn the_slurm_script_runs_one_share_per_array_task() {
    let script = deploy("slurm-array.sh");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n");
    let source = std::fs::read_to_string(&script).unwrap();
    let array = source
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
        .expect("an array line");
    let (first, last) = array.split_once('-').unwrap();
    let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
    let command = source
        .lines()
        .find(|l| l.starts_with("srun deepdream"))
        .expect("the srun line");
    let args: Vec<String> = command
        .split_whitespace()
        .skip(2)
        .map(|word| word.replace("\"${SLURM_CPUS_PER_TASK}\"", "1"))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    frames(dir.path());
    let count = (last - first + 1).to_string();
    for task in first..=last {
        let (task, min) = (task.to_string(), first.to_string());
        run(
            dir.path(),
            &args,
            &[
                ("SLURM_ARRAY_TASK_ID", &task),
                ("SLURM_ARRAY_TASK_MIN", &min),
                ("SLURM_ARRAY_TASK_COUNT", &count),
            ],
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("dreams"))
            .unwrap()
            .count(),
        3
    );
}

#[test]
fn the_container_is_built_in_two_stages_and_runs_as_a_user() {
    let source = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let from: Vec<&str> = source.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(from[0].contains(" AS build"));
    assert!(source.contains("COPY --from=build /src/target/release/deepdream"));
    let user = source
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "root");
    assert!(source.contains("ENTRYPOINT [\"deepdream\"]"));
    assert!(
        source.contains("ENV DEEPDREAM_HOME="),
        "weights baked into a known place"
    );
    assert!(source.contains("ffmpeg"), "the video paths need FFmpeg");
}
