/// Prints rows as aligned columns under a header.
pub(crate) fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `rows` as `output` asks, when that is JSON, YAML or names (`name` gives a row's); `false` for the table,
/// which the caller prints.
pub(crate) fn print_structured<T: serde::Serialize>(
    output: crate::OutputFormat,
    rows: &[T],
    name: impl Fn(&T) -> &str,
) -> Result<bool, crate::failure::Failure> {
    use crate::OutputFormat;
    match output {
        OutputFormat::Table => return Ok(false),
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(rows).map_err(|e| crate::failure::Failure::runtime(&e))?);
        }
        OutputFormat::Yaml => {
            print!("{}", serde_saphyr::to_string(&rows).map_err(|e| crate::failure::Failure::runtime(&e))?);
        }
        OutputFormat::Name => rows.iter().for_each(|row| println!("{}", name(row))),
    }
    Ok(true)
}

/// `1 cluster`, `2 clusters`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
