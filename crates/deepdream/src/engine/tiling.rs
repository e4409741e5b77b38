//! Exact tiling: a gradient computed tile by tile, so that memory depends on the tile and
//! not on the image, equal to the gradient of the whole image. The objective's layer
//! outputs are split into tiles; each tile runs on a crop of the input with enough context
//! around it (the layers' receptive field, aligned to their stride) that its outputs are
//! exactly those of the whole image, and only its own outputs enter the objective.

use std::ops::Range;

use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// How the gradient of an image of a given size will be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Tile side in input pixels, or `None` for the whole image at once.
    pub tile: Option<usize>,
    /// Estimated memory of one gradient, in bytes.
    pub gradient_bytes: u64,
}

/// What tiling an objective needs: the coarsest stride of its layers (a multiple of the
/// others) and their widest context, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Tiles and crops start at multiples of this, so that every pooling and strided
    /// convolution keeps its phase.
    pub stride: usize,
    /// Input pixels of context each side of a tile.
    pub halo: usize,
}

/// Plans the gradient of a `width`x`height` image that needs `bytes_per_pixel` within
/// `budget` bytes: whole, or in the largest tiles that fit. `tiling` is `None` for an
/// objective that cannot be tiled; `what` names the gradient in errors. An error if the
/// whole image does not fit and not even the smallest tile does.
pub fn plan(
    width: usize,
    height: usize,
    bytes_per_pixel: f64,
    budget: u64,
    tiling: Option<Tiling>,
    what: &str,
) -> Result<Plan> {
    let whole = (bytes_per_pixel * (width * height) as f64) as u64;
    if whole <= budget {
        return Ok(Plan {
            tile: None,
            gradient_bytes: whole,
        });
    }
    let over = |needed: u64, hint: &str| Error::OverMemoryBudget {
        what: what.to_string(),
        needed,
        budget,
        hint: hint.to_string(),
    };
    let Some(Tiling { stride, halo }) = tiling else {
        return Err(over(
            whole,
            " (class objectives cannot be tiled) or dream a smaller image",
        ));
    };
    // Largest tile whose crop (tile, context each side, stride alignment, and a stride more
    // for crops of one size) fits.
    let crop_side = (budget as f64 / bytes_per_pixel).sqrt() as usize;
    let margin = 2 * halo + 3 * stride;
    let tile = crop_side.saturating_sub(margin) / stride * stride;
    let tile = tile.min(width.max(height).next_multiple_of(stride));
    if tile == 0 {
        let smallest = stride + margin;
        let needed = (bytes_per_pixel * (smallest * smallest) as f64) as u64;
        return Err(over(needed, " or choose a shallower layer"));
    }
    let crop = |side: usize| (tile + margin).min(side);
    Ok(Plan {
        tile: Some(tile),
        gradient_bytes: (bytes_per_pixel * (crop(width) * crop(height)) as f64) as u64,
    })
}

/// One tile: the input pixels it owns and the crop it is computed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Owned input rows.
    pub rows: Range<usize>,
    /// Owned input columns.
    pub cols: Range<usize>,
    /// Rows of the crop (the owned rows with their context).
    pub crop_rows: Range<usize>,
    /// Columns of the crop.
    pub crop_cols: Range<usize>,
}

impl Tile {
    /// The outputs (rows, columns) of a layer of stride `stride` that this tile owns, in the
    /// coordinates of the layer's output on the crop, which is `height` x `width`.
    pub fn owned_outputs(&self, stride: usize, height: usize, width: usize) -> [Range<usize>; 2] {
        let (top, left) = (self.crop_rows.start, self.crop_cols.start);
        let rows = (self.rows.start - top) / stride
            ..(self.rows.end.div_ceil(stride) - top / stride).min(height);
        let cols = (self.cols.start - left) / stride
            ..(self.cols.end.div_ceil(stride) - left / stride).min(width);
        [rows, cols]
    }
}

/// The tiles of `tile` pixels that cover a `height` x `width` image, the grid shifted by
/// `offset` (rows, columns), row by row. With `same_crops`, every crop has one size (that of
/// an inner tile's, edge tiles taking more context on their inner side) whatever the offset,
/// so that a device that compiles or tunes its kernels per input shape (a GPU) meets one shape
/// per image size instead of a new one at almost every step; else edge crops are as small as
/// their tiles allow.
pub fn tiles(
    height: usize,
    width: usize,
    tile: usize,
    offset: (usize, usize),
    Tiling { stride, halo }: Tiling,
    same_crops: bool,
) -> Result<Vec<Tile>> {
    if tile == 0 || !tile.is_multiple_of(stride) {
        return Err(Error::InvalidParameter(format!(
            "the tile size must be a multiple of {stride}"
        )));
    }
    let mut tiles = Vec::new();
    let crop = |start, end, size| match same_crops {
        true => same_size_crop(start, tile, halo, stride, size),
        false => crop_range(start, end, halo, stride, size),
    };
    for (y0, y1) in tile_ranges(height, tile, offset.0 % tile) {
        for (x0, x1) in tile_ranges(width, tile, offset.1 % tile) {
            let (top, bottom) = crop(y0, y1, height);
            let (left, right) = crop(x0, x1, width);
            tiles.push(Tile {
                rows: y0..y1,
                cols: x0..x1,
                crop_rows: top..bottom,
                crop_cols: left..right,
            });
        }
    }
    Ok(tiles)
}

/// The gradient of a `[1, 3, H, W]` `input` assembled from `tiles`: `gradient` gives each
/// tile's crop's gradient (or `None` when the tile owns no output), added into place.
pub fn assemble(
    input: &Tensor<4>,
    tiles: &[Tile],
    mut gradient: impl FnMut(Tensor<4>, &Tile) -> Result<Option<Tensor<4>>>,
) -> Result<Tensor<4>> {
    let mut total = input.zeros_like();
    for tile in tiles {
        let region = [0..1, 0..3, tile.crop_rows.clone(), tile.crop_cols.clone()];
        let crop = input.clone().slice(region.clone());
        let Some(part) = gradient(crop, tile)? else {
            continue;
        };
        let sum = total.clone().slice(region.clone()).add(part);
        total = total.slice_assign(region, sum);
    }
    Ok(total)
}

/// The ranges `[start, end)` that split `0..size` into tiles of `tile`, the grid starting at
/// `offset − tile` (so that a random offset moves every seam).
fn tile_ranges(size: usize, tile: usize, offset: usize) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut end = if offset == 0 { tile } else { offset };
    while start < size {
        let stop = end.min(size);
        ranges.push((start, stop));
        start = stop;
        end += tile;
    }
    ranges
}

/// The crop around the owned range `start..end` of a dimension of `size`: `halo` pixels of
/// context each side, beginning at a multiple of `stride` and ending where the image does
/// modulo `stride`, so that every pooling and strided convolution keeps its phase.
fn crop_range(start: usize, end: usize, halo: usize, stride: usize, size: usize) -> (usize, usize) {
    let from = start.saturating_sub(halo) / stride * stride;
    let to = (end + halo).min(size);
    let to = (to + (size - to) % stride).min(size);
    (from, to)
}

/// The crop of one length for every tile of up to `tile` pixels starting at `start` in a
/// dimension of `size`: the shortest that holds any tile with `halo` pixels of context each
/// side and ends where the image does modulo `stride` (as [`crop_range`]'s crops do), placed
/// at a multiple of `stride` with the context before the tile, moved inwards at the image's
/// far edge; the whole dimension when it is shorter.
fn same_size_crop(
    start: usize,
    tile: usize,
    halo: usize,
    stride: usize,
    size: usize,
) -> (usize, usize) {
    let needed = tile + 2 * (halo + stride);
    let length = needed + (size + stride - needed % stride) % stride;
    if length >= size {
        return (0, size);
    }
    // `size - length` is a multiple of `stride`, as `length` ends where the image does.
    let from = (start.saturating_sub(halo) / stride * stride).min(size - length);
    (from, from + length)
}

/// A memory size from `1G`, `512M`, `800K` (a trailing `B` or `iB` allowed) or a byte
/// count.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], text[i..].to_ascii_uppercase()),
        None => (text, String::new()),
    };
    let scale: u64 = match unit.trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(Error::InvalidParameter(format!(
                "unknown unit in '{text}' (use K, M or G)"
            )));
        }
    };
    let number: f64 = number.trim().parse().map_err(|_| {
        Error::InvalidParameter(format!("'{text}' is not a size such as 512M or 2G"))
    })?;
    if !(number.is_finite() && number > 0.0) {
        return Err(Error::InvalidParameter(format!(
            "'{text}' is not a positive size"
        )));
    }
    Ok((number * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_once_with_aligned_crops() {
        let tiling = Tiling { stride: 4, halo: 6 };
        let tiles = tiles(30, 21, 8, (4, 0), tiling, false).unwrap();
        let mut covered = vec![0; 30 * 21];
        for tile in &tiles {
            assert_eq!(tile.crop_rows.start % 4, 0);
            assert_eq!(tile.crop_cols.start % 4, 0);
            assert!(tile.crop_rows.start + 6 <= tile.rows.start || tile.crop_rows.start == 0);
            for y in tile.rows.clone() {
                for x in tile.cols.clone() {
                    covered[y * 21 + x] += 1;
                }
            }
        }
        assert!(covered.iter().all(|&n| n == 1));
        assert!(super::tiles(30, 21, 6, (0, 0), tiling, false).is_err());
    }

    /// With `same_crops`, every crop of an image has one size for any grid offset, starts at
    /// a multiple of the stride, ends where the image does modulo the stride, and holds its
    /// tile with its context.
    #[test]
    fn same_crops_have_one_size_and_hold_their_tiles() {
        let tiling = Tiling { stride: 4, halo: 6 };
        for (height, width) in [(30, 21), (61, 90), (100, 37)] {
            let mut sizes = std::collections::BTreeSet::new();
            for offset in [(0, 0), (4, 8), (12, 4), (16, 16)] {
                for tile in tiles(height, width, 16, offset, tiling, true).unwrap() {
                    for (owned, crop, size) in [
                        (&tile.rows, &tile.crop_rows, height),
                        (&tile.cols, &tile.crop_cols, width),
                    ] {
                        assert_eq!(crop.start % 4, 0);
                        assert_eq!((size - crop.end) % 4, 0);
                        assert!(crop.start + 6 <= owned.start || crop.start == 0);
                        assert!(owned.end + 6 <= crop.end || crop.end == size);
                    }
                    sizes.insert((tile.crop_rows.len(), tile.crop_cols.len()));
                }
            }
            assert_eq!(sizes.len(), 1, "{height}x{width}: crops of sizes {sizes:?}");
        }
    }

    #[test]
    fn a_budget_too_small_for_one_tile_is_refused() {
        let tiling = Some(Tiling {
            stride: 8,
            halo: 100,
        });
        let plan = plan(1000, 1000, 100.0, 1 << 30, tiling, "g").unwrap();
        assert_eq!(plan.tile, None);
        let tiled = super::plan(1000, 1000, 100.0, 40 << 20, tiling, "g").unwrap();
        assert!(tiled.tile.is_some_and(|t| t % 8 == 0));
        let error = super::plan(1000, 1000, 100.0, 1000, tiling, "g").unwrap_err();
        assert!(error.to_string().contains("shallower layer"), "{error}");
        let error = super::plan(1000, 1000, 100.0, 1000, None, "g").unwrap_err();
        assert!(error.to_string().contains("cannot be tiled"), "{error}");
    }
}
