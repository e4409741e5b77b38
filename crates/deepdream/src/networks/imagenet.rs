//! The 1000 ImageNet-1k class names (from torchvision, see `data/SOURCES.md`), and looking
//! a class up by name or number.

use crate::error::{Error, Result};

const CLASS_FILE: &str = include_str!("../../data/imagenet_classes.txt");

/// Number of ImageNet-1k classes.
pub const CLASS_COUNT: usize = 1000;

/// The class names, in class-index order.
pub fn class_names() -> Vec<&'static str> {
    CLASS_FILE.lines().collect()
}

/// The name of class `index`.
pub fn class_name(index: usize) -> Option<&'static str> {
    CLASS_FILE.lines().nth(index)
}

/// Finds a class by number (`281`) or name (`tabby`, any case). An unknown name's error
/// suggests the closest names.
pub fn find_class(query: &str) -> Result<usize> {
    let query = query.trim();
    if let Ok(index) = query.parse::<usize>() {
        return if index < CLASS_COUNT {
            Ok(index)
        } else {
            Err(Error::UnknownClass {
                name: query.to_string(),
                suggestions: format!("class numbers go from 0 to {}", CLASS_COUNT - 1),
            })
        };
    }
    let names = class_names();
    let wanted = query.to_lowercase().replace('_', " ");
    if let Some(index) = names.iter().position(|n| n.to_lowercase() == wanted) {
        return Ok(index);
    }
    let mut scored: Vec<(f64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = name.to_lowercase();
            let contains = if name.contains(&wanted) { 0.5 } else { 0.0 };
            (strsim::jaro_winkler(&wanted, &name) + contains, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let suggestions = scored
        .iter()
        .take(5)
        .map(|&(_, i)| format!("'{}' ({i})", names[i]))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::UnknownClass {
        name: query.to_string(),
        suggestions: format!("did you mean {suggestions}?"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_found_by_name_or_number() {
        assert_eq!(class_names().len(), CLASS_COUNT);
        assert_eq!(find_class("tabby").unwrap(), 281);
        assert_eq!(find_class("Tiger Cat").unwrap(), 282);
        assert_eq!(find_class("golden_retriever").unwrap(), 207);
        assert_eq!(find_class("281").unwrap(), 281);
        assert_eq!(class_name(285), Some("Egyptian cat"));
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let error = find_class("tabby cat").unwrap_err().to_string();
        assert!(error.contains("'tabby' (281)"), "{error}");
        let error = find_class("1000").unwrap_err().to_string();
        assert!(error.contains("0 to 999"), "{error}");
    }
}
