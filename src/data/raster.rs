//! Decoded tile images and POI rasters, with an on-disk cache keyed by the dataset's content
//! fingerprint and the requested size, so a second run does not decode PNGs again and a changed
//! dataset never reuses stale arrays.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::format::{CityDataset, Poi};
use super::geo;
use crate::error::{Error, Result};
use crate::track::atomic_write;

/// Every tile's RGB image at `size`×`size`, row-major HWC, u8.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageStack {
    pub size: usize,
    pub data: ImageBytes,
}

/// The bytes of an image stack: in memory, or a private copy-on-write mapping of its cache
/// file. A mapping is read page by page as tiles are used and the kernel may drop clean pages
/// again under memory pressure, so a city whose images exceed the memory (50 000 tiles at
/// 256 px are 9.8 GB) still trains; what a process changes stays its own.
pub enum ImageBytes {
    Owned(Vec<u8>),
    Mapped(memmap2::MmapMut),
}

impl std::ops::Deref for ImageBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ImageBytes::Owned(v) => v,
            ImageBytes::Mapped(m) => m,
        }
    }
}

impl std::ops::DerefMut for ImageBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ImageBytes::Owned(v) => v,
            ImageBytes::Mapped(m) => m,
        }
    }
}

impl From<Vec<u8>> for ImageBytes {
    fn from(v: Vec<u8>) -> Self {
        ImageBytes::Owned(v)
    }
}

impl Clone for ImageBytes {
    fn clone(&self) -> Self {
        ImageBytes::Owned(self.to_vec())
    }
}

impl PartialEq for ImageBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for ImageBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            ImageBytes::Owned(_) => "in memory",
            ImageBytes::Mapped(_) => "mapped",
        };
        write!(f, "ImageBytes({} bytes, {how})", self.len())
    }
}

impl ImageStack {
    pub fn tile(&self, i: usize) -> &[u8] {
        let n = self.size * self.size * 3;
        &self.data[i * n..(i + 1) * n]
    }

    pub fn len(&self) -> usize {
        self.data.len() / (self.size * self.size * 3)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// One POI's cell in the raster of its tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RasterCell {
    pub channel: u16,
    pub row: u16,
    pub col: u16,
    pub weight: f32,
}

/// The C×H×W POI rasters of all tiles, kept sparse (most cells of most tiles are empty).
#[derive(Debug, Clone, PartialEq)]
pub struct PoiRaster {
    pub channels: usize,
    pub size: usize,
    /// Per tile, its non-empty cells, each once (POIs in the same cell are summed), sorted by
    /// (channel, row, col).
    pub cells: Vec<Vec<RasterCell>>,
}

impl PoiRaster {
    /// Rasterise POIs per the dataset format: col = floor(frac_x·W), row = floor(frac_y·H).
    pub fn build(ds: &CityDataset, size: usize) -> PoiRaster {
        let mut cells: Vec<Vec<RasterCell>> = vec![Vec::new(); ds.tiles.len()];
        for p in &ds.pois {
            cells[p.tile as usize].push(cell_of(p, ds.meta.zoom, size));
        }
        for tile in &mut cells {
            tile.sort_by_key(|c| (c.channel, c.row, c.col));
            tile.dedup_by(|later, kept| {
                let same =
                    (later.channel, later.row, later.col) == (kept.channel, kept.row, kept.col);
                if same {
                    kept.weight += later.weight;
                }
                same
            });
        }
        PoiRaster {
            channels: ds.meta.poi_categories.len(),
            size,
            cells,
        }
    }

    /// Dense C×H×W raster of one tile.
    pub fn dense(&self, tile: usize) -> Vec<f32> {
        let hw = self.size * self.size;
        let mut out = vec![0.0; self.channels * hw];
        for c in &self.cells[tile] {
            out[c.channel as usize * hw + c.row as usize * self.size + c.col as usize] += c.weight;
        }
        out
    }

    /// Weighted POI count per channel of one tile.
    pub fn counts(&self, tile: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.channels];
        for c in &self.cells[tile] {
            out[c.channel as usize] += c.weight as f64;
        }
        out
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [
            self.channels as u64,
            self.size as u64,
            self.cells.len() as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for tile in &self.cells {
            b.extend_from_slice(&(tile.len() as u64).to_le_bytes());
            for c in tile {
                b.extend_from_slice(&c.channel.to_le_bytes());
                b.extend_from_slice(&c.row.to_le_bytes());
                b.extend_from_slice(&c.col.to_le_bytes());
                b.extend_from_slice(&c.weight.to_le_bytes());
            }
        }
        b
    }

    fn from_bytes(b: &[u8]) -> Option<PoiRaster> {
        let mut r = ByteReader { b, pos: 0 };
        let channels = r.u64()? as usize;
        let size = r.u64()? as usize;
        let n = r.u64()? as usize;
        let mut cells = Vec::with_capacity(n);
        for _ in 0..n {
            let m = r.u64()? as usize;
            let mut tile = Vec::with_capacity(m);
            for _ in 0..m {
                tile.push(RasterCell {
                    channel: r.u16()?,
                    row: r.u16()?,
                    col: r.u16()?,
                    weight: f32::from_le_bytes(r.take(4)?.try_into().ok()?),
                });
            }
            cells.push(tile);
        }
        (r.pos == b.len()).then_some(PoiRaster {
            channels,
            size,
            cells,
        })
    }
}

struct ByteReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl ByteReader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
}

fn cell_of(p: &Poi, zoom: u8, size: usize) -> RasterCell {
    let (fx, fy) = geo::lonlat_to_tile(p.lon, p.lat, zoom);
    let clamp = |f: f64| ((f.fract() * size as f64).floor() as usize).min(size - 1) as u16;
    RasterCell {
        channel: p.category,
        row: clamp(fy),
        col: clamp(fx),
        weight: p.weight,
    }
}

pub use crate::track::render::encode_png;

/// Decode and resize one tile image to `size`×`size` RGB.
pub fn decode_image(path: &Path, size: usize) -> Result<Vec<u8>> {
    let img = read_tile_image(path)?;
    let img = if img.width() as usize == size {
        img
    } else {
        image::imageops::resize(&img, size as u32, size as u32, FilterType::Triangle)
    };
    Ok(img.into_raw())
}

/// Decode one tile image as RGB, refusing what is not a regular file, an image larger than
/// `max_image_side` (checked from the header, before any pixel is allocated), a truncated or
/// non-image file, a grey image, and a tile that is not square. Every refusal names the file (exit 2).
pub fn read_tile_image(path: &Path) -> Result<image::RgbImage> {
    super::check_dataset_input(path)?;
    let open = || {
        image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| Error::dataset(path, None, format!("cannot read image: {e}")))
    };
    let bad =
        |e: image::ImageError| Error::dataset(path, None, format!("cannot decode image: {e}"));
    let (w, h) = open()?.into_dimensions().map_err(bad)?;
    let side = super::max_image_side();
    if w > side || h > side {
        return Err(Error::dataset(
            path,
            None,
            format!(
                "image is {w}×{h} px, larger than the limit of {side} px a side (set OPENCARBON_MAX_IMAGE_SIDE to raise it)"
            ),
        ));
    }
    let mut reader = open()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    reader.limits(limits);
    let decoded = reader.decode().map_err(bad)?;
    // The format's images are colour (RGB or RGBA, any bit depth; a palette PNG decodes to
    // one): a grey image would pass as three equal channels that no model was meant to see.
    let colour = decoded.color();
    if !colour.has_color() {
        return Err(Error::dataset(
            path,
            None,
            format!("image is grey ({colour:?}), expected RGB or RGBA"),
        ));
    }
    let img = decoded.to_rgb8();
    if img.width() != img.height() {
        return Err(Error::dataset(
            path,
            None,
            format!(
                "image is {}×{}, expected a square tile",
                img.width(),
                img.height()
            ),
        ));
    }
    Ok(img)
}

/// The cache folder of one dataset's derived arrays.
pub struct DerivedCache {
    dir: PathBuf,
}

impl DerivedCache {
    pub fn new(cache_root: &Path, fingerprint: &str) -> DerivedCache {
        DerivedCache {
            dir: cache_root.join("derived").join(fingerprint),
        }
    }

    fn get_or_build(
        &self,
        name: &str,
        build: impl FnOnce() -> Result<Vec<u8>>,
        valid: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        if let Ok(bytes) = fs::read(&path) {
            if valid(&bytes) {
                return Ok(bytes);
            }
        }
        let bytes = build()?;
        atomic_write(&path, &bytes)?;
        Ok(bytes)
    }

    /// All tile images of `ds` at `size` px, decoded once into the cache file and mapped from
    /// it (`ImageBytes`): memory holds one chunk of decoded tiles at a time, never the stack.
    pub fn images(&self, ds: &CityDataset, size: usize) -> Result<ImageStack> {
        let expected = (ds.tiles.len() * size * size * 3) as u64;
        if expected == 0 {
            return Ok(ImageStack {
                size,
                data: Vec::new().into(),
            });
        }
        let path = self.dir.join(format!("images_{size}.u8"));
        if fs::metadata(&path).ok().map(|m| m.len()) != Some(expected) {
            decode_all_to(ds, size, &path, DECODE_CHUNK)?;
        }
        let file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: cache files are only ever replaced by rename (`decode_all_to`,
        // `atomic_write`), never written in place or truncated, so the mapped inode keeps
        // its contents for the mapping's life; the mapping is private, so writes through it
        // never reach the file.
        let map = unsafe { memmap2::MmapOptions::new().map_copy(&file) }
            .map_err(|e| Error::io(&path, e))?;
        if map.len() as u64 != expected {
            return Err(Error::Internal(format!(
                "{}: {} bytes, expected {expected}",
                path.display(),
                map.len()
            )));
        }
        Ok(ImageStack {
            size,
            data: ImageBytes::Mapped(map),
        })
    }

    /// The POI rasters of `ds` at `size` px, built once and cached.
    pub fn poi_raster(&self, ds: &CityDataset, size: usize) -> Result<PoiRaster> {
        let bytes = self.get_or_build(
            // v2: cells merged at build time (v1 caches held one entry per POI).
            &format!("poi_raster_{size}_v2.bin"),
            || Ok(PoiRaster::build(ds, size).to_bytes()),
            |b| PoiRaster::from_bytes(b).is_some(),
        )?;
        PoiRaster::from_bytes(&bytes)
            .ok_or_else(|| Error::Internal("corrupt POI raster cache".into()))
    }
}

/// Tiles decoded per chunk by `decode_all_to` (at 256 px, 1024 tiles are 200 MB).
const DECODE_CHUNK: usize = 1024;

/// Decode every image into the file `path`, `chunk` tiles at a time (the work of a chunk
/// spread over the available cores), through a temp file and a rename.
fn decode_all_to(ds: &CityDataset, size: usize, path: &Path, chunk: usize) -> Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::track::remove_dead_temps(dir)?;
    }
    let tmp = crate::track::temp_path(path);
    let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut out = std::io::BufWriter::new(file);
    let n = ds.tiles.len();
    let bar = crate::track::progress::Bar::new(n as u64, "images")
        .prefix(format!("decoding {}", ds.meta.name));
    let written = (0..n).step_by(chunk).try_for_each(|start| {
        let tiles: Vec<usize> = (start..(start + chunk).min(n)).collect();
        out.write_all(&decode_tiles(ds, size, &tiles)?)
            .map_err(|e| Error::io(&tmp, e))?;
        bar.set((start + tiles.len()) as u64, "");
        Ok(())
    });
    let synced = written.and_then(|()| {
        out.into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(&tmp, e))
    });
    if let Err(e) = synced {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    crate::track::fault::point("rename decoded images into the cache");
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Decode `tiles` of `ds` at `size` px, spreading the work over the available cores.
fn decode_tiles(ds: &CityDataset, size: usize, tiles: &[usize]) -> Result<Vec<u8>> {
    let per = size * size * 3;
    let threads = crate::track::provenance::threads().min(8);
    let chunk = tiles.len().div_ceil(threads).max(1);
    let mut data = vec![0u8; tiles.len() * per];
    std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks_mut(chunk * per)
            .zip(tiles.chunks(chunk))
            .map(|(out, mine)| {
                s.spawn(move || -> Result<()> {
                    for (dst, &t) in out.chunks_mut(per).zip(mine) {
                        dst.copy_from_slice(&decode_image(&ds.image_path(t), size)?);
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| Error::Internal("image decoder panicked".into()))?
        })
    })?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poi_cell_follows_the_spec_formula() {
        // A point 30 % east and 70 % south inside its zoom-15 tile lands in col 19, row 44 of 64.
        let zoom = 15;
        let (x, y) = (16372.0 + 0.3, 10896.0 + 0.7);
        let lon = geo::tile_x_to_lon(x, zoom);
        let lat = geo::tile_y_to_lat(y, zoom);
        let p = Poi {
            lon,
            lat,
            category: 2,
            weight: 1.5,
            tile: 0,
        };
        let c = cell_of(&p, zoom, 64);
        assert_eq!((c.channel, c.row, c.col, c.weight), (2, 44, 19, 1.5));
    }

    #[test]
    fn raster_bytes_round_trip() {
        let r = PoiRaster {
            channels: 3,
            size: 8,
            cells: vec![
                vec![RasterCell {
                    channel: 1,
                    row: 2,
                    col: 3,
                    weight: 0.5,
                }],
                vec![],
                vec![
                    RasterCell {
                        channel: 0,
                        row: 7,
                        col: 7,
                        weight: 1.0,
                    },
                    RasterCell {
                        channel: 0,
                        row: 7,
                        col: 7,
                        weight: 2.0,
                    },
                ],
            ],
        };
        let back = PoiRaster::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.dense(2)[7 * 8 + 7], 3.0);
        assert_eq!(back.counts(0), vec![0.0, 0.5, 0.0]);
        assert!(PoiRaster::from_bytes(&r.to_bytes()[..20]).is_none());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::data::format::content_fingerprint;
    use crate::data::synth::{preset, SynthCity};

    #[test]
    fn cache_is_reused_and_invalidated_when_the_dataset_changes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("city");
        SynthCity::generate(&preset("tiny").unwrap(), 2)
            .write(&data)
            .unwrap();
        let ds = CityDataset::open(&data).unwrap();
        let fp = content_fingerprint(&ds).unwrap();
        let cache = DerivedCache::new(&dir.path().join("cache"), &fp);
        let first = cache.images(&ds, 32).unwrap();
        assert_eq!(first.len(), ds.tiles.len());
        assert_eq!(
            first.tile(0),
            &decode_image(&ds.image_path(0), 32).unwrap()[..]
        );
        let cached = dir
            .path()
            .join("cache/derived")
            .join(&fp)
            .join("images_32.u8");
        assert!(cached.is_file());
        // A second load reads the cache, not the PNGs: prove it by breaking a PNG.
        std::fs::write(ds.image_path(0), b"not a png").unwrap();
        assert_eq!(cache.images(&ds, 32).unwrap(), first);
        // Changing an image changes the fingerprint, so a fresh cache entry is used.
        std::fs::write(
            ds.image_path(0),
            encode_png(&vec![0u8; 64 * 64 * 3], 64, 64).unwrap(),
        )
        .unwrap();
        let fp2 = content_fingerprint(&ds).unwrap();
        assert_ne!(fp, fp2);
        let fresh = DerivedCache::new(&dir.path().join("cache"), &fp2)
            .images(&ds, 32)
            .unwrap();
        assert!(fresh.tile(0).iter().all(|&v| v == 0));
        let raster = cache.poi_raster(&ds, 16).unwrap();
        assert_eq!(raster, PoiRaster::build(&ds, 16));
    }

    /// The stack is mapped from its cache file, every tile as decoded, in order across the
    /// decoding chunks; writes through the mapping stay private; a cache file of the wrong
    /// length (an older or foreign file) is rebuilt.
    #[test]
    fn the_image_stack_is_mapped_from_its_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("city");
        SynthCity::generate(&preset("tiny").unwrap(), 5)
            .write(&data)
            .unwrap();
        let ds = CityDataset::open(&data).unwrap();
        let cache = DerivedCache::new(dir.path(), "fp");
        let file = dir.path().join("derived/fp/images_16.u8");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"short").unwrap();
        let mut stack = cache.images(&ds, 16).unwrap();
        assert!(matches!(stack.data, ImageBytes::Mapped(_)));
        let tiles: Vec<usize> = (0..ds.tiles.len()).collect();
        assert_eq!(&stack.data[..], &decode_tiles(&ds, 16, &tiles).unwrap()[..]);
        for t in [0, ds.tiles.len() - 1] {
            assert_eq!(
                stack.tile(t),
                &decode_image(&ds.image_path(t), 16).unwrap()[..]
            );
        }
        let on_disk = std::fs::read(&file).unwrap();
        stack.data[0] ^= 0xff;
        assert_eq!(std::fs::read(&file).unwrap(), on_disk);
        // Chunks of 7 tiles (64 is no multiple of 7) give the same bytes.
        let chunked = dir.path().join("chunked.u8");
        decode_all_to(&ds, 16, &chunked, 7).unwrap();
        assert_eq!(std::fs::read(&chunked).unwrap(), on_disk);
    }
}
