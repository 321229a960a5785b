//! QR codes of identifiers' proxy URLs, for the record pages and for
//! labels (`idnode id qr`): the URL `<base>/<percent-encoded identifier>`
//! as an SVG or a PNG, with the quiet zone of four modules the standard
//! asks for, error correction level M, black on white.

use qrcode::QrCode;
use qrcode::render::svg;

/// The smallest width and height asked of an image when none is given, in
/// pixels.
pub const DEFAULT_SIZE: u32 = 256;

/// The largest width and height that may be asked for, in pixels.
pub const MAX_SIZE: u32 = 8192;

/// The modules of the quiet zone on each side.
const QUIET: u32 = 4;

/// Why no QR code was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrError {
    /// The text does not fit in the largest QR code (version 40).
    TooLong { bytes: usize },
    /// A size of 0 or above [`MAX_SIZE`].
    Size(u32),
    /// The PNG encoder failed.
    Png(String),
}

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { bytes } => write!(
                f,
                "{bytes} bytes do not fit in a QR code (at most 2331 at error correction level M)"
            ),
            Self::Size(size) => write!(f, "size {size}: give 1 to {MAX_SIZE} pixels"),
            Self::Png(e) => write!(f, "cannot encode the PNG: {e}"),
        }
    }
}

impl std::error::Error for QrError {}

/// The proxy URL of an identifier: `base` (its trailing slashes cut), a
/// slash, the identifier percent-encoded as a path.
pub fn proxy_url(base: &str, handle: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        crate::pages::encode(handle)
    )
}

/// Checks a base URL (`[http] base_url`, `--base-url`): `http://` or
/// `https://`, a host, an optional path, no query, fragment, spaces or
/// control characters. Returns it with its trailing slashes cut.
pub fn base_url(text: &str) -> Result<String, String> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &text[8..]
    } else if lower.starts_with("http://") {
        &text[7..]
    } else {
        return Err(format!(
            "base URL `{text}`: give http://HOST or https://HOST (with an optional path)"
        ));
    };
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '"' | '<' | '>'))
    {
        return Err(format!("base URL `{text}`: {bad:?} is not allowed in it"));
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!("base URL `{text}`: no host (or a user name) in it"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn code(text: &str) -> Result<QrCode, QrError> {
    QrCode::new(text.as_bytes()).map_err(|_| QrError::TooLong { bytes: text.len() })
}

/// Pixels per module for an image at least `size` pixels wide.
fn module_px(code: &QrCode, size: u32) -> Result<u32, QrError> {
    if size == 0 || size > MAX_SIZE {
        return Err(QrError::Size(size));
    }
    let modules = code.width() as u32 + 2 * QUIET;
    Ok(size.div_ceil(modules).max(1))
}

/// `text` as a QR code in SVG, at least `size` pixels wide (whole pixels
/// per module). A document of its own without an XML declaration, so the
/// same text is a `.svg` file and can be put inline in HTML.
pub fn svg(text: &str, size: u32) -> Result<String, QrError> {
    let code = code(text)?;
    let px = module_px(&code, size)?;
    let image = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(px, px)
        .build();
    Ok(match image.find("<svg") {
        Some(at) => image[at..].to_owned(),
        None => image,
    })
}

/// `text` as a QR code in PNG (1-bit grayscale), at least `size` pixels
/// wide (whole pixels per module).
pub fn png(text: &str, size: u32) -> Result<Vec<u8>, QrError> {
    let code = code(text)?;
    let px = module_px(&code, size)?;
    let modules = code.width() as u32;
    let side = (modules + 2 * QUIET) * px;
    let colors = code.to_colors();
    let row_bytes = side.div_ceil(8) as usize;
    // 1 is white in 1-bit grayscale: start white, clear the dark modules.
    let mut pixels = vec![0xffu8; row_bytes * side as usize];
    for y in 0..modules {
        for x in 0..modules {
            if colors[(y * modules + x) as usize] != qrcode::Color::Dark {
                continue;
            }
            for dy in 0..px {
                let row = ((QUIET + y) * px + dy) as usize * row_bytes;
                for dx in 0..px {
                    let col = ((QUIET + x) * px + dx) as usize;
                    pixels[row + col / 8] &= !(0x80 >> (col % 8));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(pixels.len() / 4 + 128);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let failed = |e: png::EncodingError| QrError::Png(e.to_string());
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&pixels).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const URL: &str = "https://id.example.com/88.100.1/ABC-123";

    #[test]
    fn proxy_urls_encode_the_identifier() {
        assert_eq!(
            proxy_url("https://id.example.com/", "88.100.1/ÄBC 1"),
            "https://id.example.com/88.100.1/%C3%84BC%201"
        );
        assert_eq!(proxy_url("http://h:8000", "88.1/a"), "http://h:8000/88.1/a");
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            base_url("https://id.example.com/").unwrap(),
            "https://id.example.com"
        );
        assert_eq!(base_url("HTTP://h:1/p").unwrap(), "HTTP://h:1/p");
        for bad in [
            "id.example.com",
            "ftp://x",
            "https://",
            "https:///p",
            "http://a b",
            "http://h/?q",
            "http://u@h",
            "http://h\n",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn svg_is_a_square_of_whole_modules() {
        let svg = svg(URL, 200).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        let code = code(URL).unwrap();
        let side = (code.width() as u32 + 8) * module_px(&code, 200).unwrap();
        assert!(side >= 200);
        assert!(svg.contains(&format!("width=\"{side}\" height=\"{side}\"")));
        assert!(svg.contains("<path fill=\"#000\" d=\"M"));
        // The dark modules are whole squares of the module size.
        let px = module_px(&code, 200).unwrap();
        assert!(svg.contains(&format!("h{px}v{px}")));
    }

    #[test]
    fn png_holds_the_module_matrix() {
        let bytes = png(URL, 100).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::One);
        let side = info.width;
        assert_eq!(info.height, side);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        let row = frame.line_size;
        let code = code(URL).unwrap();
        let modules = code.width() as u32;
        let px = side / (modules + 8);
        assert_eq!(side, (modules + 8) * px);
        assert!(side >= 100);
        let dark = |x: u32, y: u32| buf[y as usize * row + x as usize / 8] & (0x80 >> (x % 8)) == 0;
        let colors = code.to_colors();
        // Every module, sampled at its centre, is the code's colour, and
        // the quiet zone is white.
        for y in 0..modules + 8 {
            for x in 0..modules + 8 {
                let expected = (4..modules + 4).contains(&x)
                    && (4..modules + 4).contains(&y)
                    && colors[((y - 4) * modules + x - 4) as usize] == qrcode::Color::Dark;
                assert_eq!(dark(x * px + px / 2, y * px + px / 2), expected, "{x},{y}");
            }
        }
        // The finder pattern's corner is dark.
        assert!(dark(4 * px, 4 * px));
    }

    #[test]
    fn bad_input_is_an_error() {
        let long = "x".repeat(3000);
        assert_eq!(svg(&long, 100), Err(QrError::TooLong { bytes: 3000 }));
        assert!(png(&long, 100).is_err());
        assert_eq!(svg(URL, 0), Err(QrError::Size(0)));
        assert_eq!(png(URL, MAX_SIZE + 1), Err(QrError::Size(MAX_SIZE + 1)));
        assert!(png(URL, MAX_SIZE).is_ok());
    }
}
