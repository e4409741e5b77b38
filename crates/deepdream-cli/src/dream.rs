//! `deepdream dream`: one picture dreamed.

use deepdream::backend::device::Placement;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use deepdream::Dreamer;
use deepdream::jobs::eta::DreamEta;
use deepdream::media::image_io;

use crate::interrupt;
use crate::options::{DreamOptions, load_network};
use crate::report::{human_duration, print_plan, progress_bar, step_message};

#[derive(Args)]
pub struct DreamArgs {
    /// The image to dream (PNG, JPEG, WebP, GIF, BMP, TIFF).
    input: PathBuf,
    /// Where to write the result; the format follows the extension (.png, .jpg, .webp, .bmp, .tiff).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamOptions,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// Dreams the picture and writes it with its parameters.
pub fn dream(args: DreamArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    image_io::check_output(&args.input, &args.output, args.force)?;
    let image = image_io::load(&args.input)?;
    deepdream::timeline::mark(|| format!("{} read", args.input.display()));
    if let Some(mask) = &args.dream.mask
        && crate::options::is_video(mask)
    {
        anyhow::bail!(
            "--mask {}: a mask video is for zoom and video; a still dream takes a mask picture",
            mask.display()
        );
    }
    let params = args.dream.params()?;
    let seed = params.seed;
    let network = load_network(&args.dream.model, target)?;
    let dreamer = Dreamer::new(network.as_ref(), params, device)?;
    let octaves = dreamer.octave_sizes(image.width(), image.height())?;
    let total = (octaves.len() * dreamer.params().iterations) as u64;
    let plan = dreamer.plan(image.width() as usize, image.height() as usize)?;
    print_plan(&plan, image.width(), image.height(), network.name());

    let bar = progress_bar(total, "steps");
    let start = Instant::now();
    let mut eta = DreamEta::new(&octaves, dreamer.params().iterations);
    let mut estimated = false;
    let (rgb, alpha) = image_io::split_alpha(&image);
    let dreamed = dreamer.dream_watched(&rgb, dreamer.params().seed, |snapshot| {
        interrupt::check()?;
        let p = snapshot.progress;
        if let Some(seconds) = eta.step(&p)
            && !estimated
        {
            estimated = true;
            let seconds = start.elapsed().as_secs_f64() + seconds;
            bar.suspend(|| note!("Estimated time: about {}", human_duration(seconds)));
        }
        bar.set_message(step_message(&p));
        bar.set_position(p.steps_done() as u64);
        Ok(())
    })?;
    let dreamed = image_io::join_alpha(dreamed, alpha.as_ref());
    bar.finish_and_clear();

    let mut metadata = args.dream.metadata(network.as_ref(), dreamer.params());
    metadata.extend(args.dream.report_chosen(&dreamer));
    image_io::save(&dreamed, &args.output, &metadata)?;
    deepdream::timeline::mark(|| format!("{} written", args.output.display()));
    note!(
        "Wrote {} ({}x{}, seed {seed}) in {:.1} s",
        args.output.display(),
        dreamed.width(),
        dreamed.height(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
