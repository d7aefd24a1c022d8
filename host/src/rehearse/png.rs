//! A small valid PNG for the attendees' uploads: the host checks an
//! upload's header and size, so the rehearsal sends real images.

use std::io::Write as _;

/// An RGB PNG of `width`×`height` with stripes coloured by `seed`.
pub fn striped(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let [r, g, b, _] = seed.to_le_bytes();
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            let on = (x + y) / 8 % 2 == 0;
            raw.extend(if on {
                [r, g, b]
            } else {
                [255 - r, 255 - g, 255 - b]
            });
        }
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&raw);
    let data = encoder.finish().unwrap_or_default();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, body) in [(b"IHDR", header), (b"IDAT", data), (b"IEND", Vec::new())] {
        png.extend((body.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(&body);
        png.extend(kind);
        png.extend(&body);
        png.extend(crc.sum().to_be_bytes());
    }
    png
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_image_is_a_png_of_the_asked_size() {
        let png = super::striped(64, 48, 7);
        let size = imagesize::blob_size(&png).expect("a readable header");
        assert_eq!((size.width, size.height), (64, 48));
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "IEND's CRC");
    }
}
