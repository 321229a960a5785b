//! A small well-formedness check for the SVG this crate writes: balanced
//! and matching tags, quoted attributes, escaped text. Enough to catch a
//! broken writer without an XML crate.

fn check_text(text: &str) -> Result<(), String> {
    if text.contains('<') || text.contains('>') {
        return Err(format!("unescaped markup in `{text}`"));
    }
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        rest = &rest[at..];
        let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
            .iter()
            .any(|e| rest.starts_with(e));
        if !ok {
            return Err(format!("bad entity in `{text}`"));
        }
        rest = &rest[1..];
    }
    Ok(())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
}

fn check_attributes(mut s: &str) -> Result<(), String> {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(());
        }
        let eq = s
            .find('=')
            .ok_or_else(|| format!("attribute without value: {s}"))?;
        if !is_name(&s[..eq]) {
            return Err(format!("bad attribute name `{}`", &s[..eq]));
        }
        let rest = &s[eq + 1..];
        let Some(value) = rest.strip_prefix('"') else {
            return Err(format!("unquoted attribute: {s}"));
        };
        let end = value.find('"').ok_or("unterminated attribute")?;
        check_text(&value[..end])?;
        s = &value[end + 1..];
        if !(s.is_empty() || s.starts_with(char::is_whitespace)) {
            return Err(format!("attributes run together: {s}"));
        }
    }
}

/// Ok when `doc` is one well-formed element (after an optional `<?xml?>`).
pub fn check_well_formed(doc: &str) -> Result<(), String> {
    let mut rest = doc.trim_start();
    if let Some(after) = rest.strip_prefix("<?xml") {
        let end = after.find("?>").ok_or("unterminated prolog")?;
        rest = &after[end + 2..];
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    loop {
        let Some(open) = rest.find('<') else {
            check_text(rest)?;
            if !rest.trim().is_empty() {
                return Err("text after the root".into());
            }
            break;
        };
        check_text(&rest[..open])?;
        if stack.is_empty() && !rest[..open].trim().is_empty() {
            return Err("text outside the root".into());
        }
        let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(top) if top == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let (body, self_closing) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        if !is_name(name) {
            return Err(format!("bad element name `{name}`"));
        }
        check_attributes(&body[name_end..])?;
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements: {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

#[test]
fn the_checker_catches_mistakes() {
    assert!(check_well_formed("<?xml version=\"1.0\"?><a x=\"1\"><b/>t &amp; u</a>").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a x=1/>",
        "<a>&nope;</a>",
        "<a>",
        "<a/><b/>",
        "<a x=\"<\"/>",
    ] {
        assert!(check_well_formed(bad).is_err(), "{bad}");
    }
}
