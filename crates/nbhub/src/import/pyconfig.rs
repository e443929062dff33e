//! Reading a `jupyterhub_config.py` without running it: a tokenizer for Python's lexical
//! rules (strings of every kind, numbers, brackets, comments, line continuations) and a
//! parser of the few statement shapes configs are made of. What it returns is, per statement,
//! the line, the target (`c.Spawner.cmd` → `["Spawner", "cmd"]`), the operation and the value
//! when the value is a literal — or why it is not (a call, a lambda, a name bound by code).
//!
//! Only a broken file is an error (an unterminated string, an unbalanced bracket): Python
//! itself would refuse it. Valid Python outside the subset is never an error: it comes back
//! as [`Item::Code`], so that the translation can report it with its line.

use std::collections::BTreeMap;
use std::fmt;

/// A literal value of the config.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Set(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A class named by an import (`from batchspawner import SlurmSpawner`, or
    /// `batchspawner.SlurmSpawner` after `import batchspawner`): its dotted name.
    Class(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a list, tuple or set.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::None => "None",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Set(_) => "a set",
            Value::Dict(_) => "a dict",
            Value::Class(_) => "a class",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, open: &str, v: &[Value], close: &str| {
            f.write_str(open)?;
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        };
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Value::None => f.write_str("None"),
            Value::List(v) => seq(f, "[", v, "]"),
            Value::Tuple(v) => seq(f, "(", v, ")"),
            Value::Set(v) => seq(f, "{", v, "}"),
            Value::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Class(c) => f.write_str(c),
        }
    }
}

/// How a setting changes its trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `c.A.b = v`
    Assign,
    /// `c.A.b += v`
    AddAssign,
    /// `c.A.b.update(v)`, or `c.A.b[k] = v` as `update({k: v})`
    Update,
    /// `c.A.b.append(v)`
    Append,
    /// `c.A.b.extend(v)`
    Extend,
}

/// A value that is not a literal, and why.
#[derive(Clone, Debug, PartialEq)]
pub enum NotLiteral {
    /// A function (`def`, `lambda`) where a value was expected.
    Callable(String),
    /// Anything else that only running Python would know (a call, an f-string with
    /// expressions, a name bound by code).
    Code(String),
}

impl fmt::Display for NotLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotLiteral::Callable(what) | NotLiteral::Code(what) => f.write_str(what),
        }
    }
}

/// One statement of the config, as far as it matters.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `c.<path> <op> <value>`.
    Setting {
        line: usize,
        /// `["Spawner", "cmd"]`
        path: Vec<String>,
        op: Op,
        value: Result<Value, NotLiteral>,
        /// Set inside a block (`if`, `for`, `def` …) starting on this line.
        in_block: Option<(usize, String)>,
        /// For a list, tuple, set or dict written out: the line each item (or key) starts on.
        item_lines: Vec<usize>,
    },
    /// `import x` / `from x import y`: nothing to translate.
    Import { line: usize, text: String },
    /// Python code the subset does not cover (a `def`, an `if`, a call …): `what` names it.
    Code {
        line: usize,
        end_line: usize,
        what: String,
    },
}

/// A file Python itself would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    /// A string literal; `None` for an f-string with expressions in it.
    Str(Option<String>),
    Op(&'static str),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// A logical line: its tokens, its first line and its indentation.
struct Logical {
    tokens: Vec<Token>,
    line: usize,
    end_line: usize,
    indent: usize,
}

const OPS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "->", ":=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
    "@=", "==", "!=", "<=", ">=", "**", "//", "<<", ">>", "(", ")", "[", "]", "{", "}", ",", ":",
    ".", ";", "=", "+", "-", "*", "/", "%", "<", ">", "&", "|", "^", "~", "@",
];

/// Splits the file into logical lines of tokens.
fn tokenize(src: &str) -> Result<Vec<Logical>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut start_line = 1;
    let mut indent = 0;
    let mut at_line_start = true;
    // Open brackets: the character and its line.
    let mut open: Vec<(char, usize)> = Vec::new();
    let err = |line: usize, message: String| SyntaxError { line, message };
    while i < chars.len() {
        let c = chars[i];
        if at_line_start && open.is_empty() {
            // Indentation of a new logical line (blank and comment lines do not count).
            let mut col = 0;
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                col += if chars[i] == '\t' { 8 - col % 8 } else { 1 };
                i += 1;
            }
            indent = col;
            start_line = line;
            at_line_start = false;
            continue;
        }
        match c {
            '\n' => {
                line += 1;
                i += 1;
                if open.is_empty() {
                    if !current.is_empty() {
                        out.push(Logical {
                            tokens: std::mem::take(&mut current),
                            line: start_line,
                            end_line: line - 1,
                            indent,
                        });
                    }
                    at_line_start = true;
                }
            }
            ' ' | '\t' | '\r' | '\x0c' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
            }
            '\\' if chars.get(i + 1) == Some(&'\r') && chars.get(i + 2) == Some(&'\n') => {
                i += 3;
                line += 1;
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '.'
                        || ((chars[i] == '+' || chars[i] == '-')
                            && matches!(chars[i - 1], 'e' | 'E')
                            && !chars[start..i].iter().any(|c| matches!(c, 'x' | 'X'))))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
                let tok = parse_number(&text)
                    .ok_or_else(|| err(line, format!("'{text}' is not a number")))?;
                current.push(Token { tok, line });
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let is_prefix = word.len() <= 2
                    && word
                        .chars()
                        .all(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'u' | 'f'));
                if is_prefix && matches!(chars.get(i), Some('"' | '\'')) {
                    let (value, next, lines) = read_string(&chars, i, &word, line)?;
                    current.push(Token {
                        tok: Tok::Str(value),
                        line,
                    });
                    line += lines;
                    i = next;
                } else {
                    current.push(Token {
                        tok: Tok::Name(word),
                        line,
                    });
                }
            }
            '"' | '\'' => {
                let (value, next, lines) = read_string(&chars, i, "", line)?;
                current.push(Token {
                    tok: Tok::Str(value),
                    line,
                });
                line += lines;
                i = next;
            }
            _ => {
                let rest: String = chars[i..(i + 3).min(chars.len())].iter().collect();
                let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(err(line, format!("unexpected character {c:?}")));
                };
                match *op {
                    "(" | "[" | "{" => open.push((c, line)),
                    ")" | "]" | "}" => {
                        let want = match c {
                            ')' => '(',
                            ']' => '[',
                            _ => '{',
                        };
                        match open.pop() {
                            Some((o, _)) if o == want => {}
                            Some((o, l)) => {
                                return Err(err(
                                    line,
                                    format!("'{c}' does not close '{o}' (opened on line {l})"),
                                ))
                            }
                            None => return Err(err(line, format!("unmatched '{c}'"))),
                        }
                    }
                    _ => {}
                }
                current.push(Token {
                    tok: Tok::Op(op),
                    line,
                });
                i += op.len();
            }
        }
    }
    if let Some((o, l)) = open.last() {
        return Err(err(*l, format!("'{o}' is never closed")));
    }
    if !current.is_empty() {
        out.push(Logical {
            tokens: current,
            line: start_line,
            end_line: line,
            indent,
        });
    }
    Ok(out)
}

fn parse_number(text: &str) -> Option<Tok> {
    let lower = text.to_ascii_lowercase();
    let radix = |prefix: &str, radix| {
        lower
            .strip_prefix(prefix)
            .and_then(|d| i64::from_str_radix(d, radix).ok())
            .map(Tok::Int)
    };
    if lower.starts_with("0x") {
        return radix("0x", 16);
    }
    if lower.starts_with("0o") {
        return radix("0o", 8);
    }
    if lower.starts_with("0b") {
        return radix("0b", 2);
    }
    if let Ok(i) = lower.parse::<i64>() {
        return Some(Tok::Int(i));
    }
    lower.parse::<f64>().ok().map(Tok::Float)
}

/// Reads the string starting at `chars[i]` (a quote); returns its value (`None` for an
/// f-string with expressions), the index after it and how many newlines it spans.
fn read_string(
    chars: &[char],
    i: usize,
    prefix: &str,
    line: usize,
) -> Result<(Option<String>, usize, usize), SyntaxError> {
    let raw = prefix.to_ascii_lowercase().contains('r');
    let fstring = prefix.to_ascii_lowercase().contains('f');
    let quote = chars[i];
    let triple = chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote);
    let mut j = if triple { i + 3 } else { i + 1 };
    let mut value = String::new();
    let mut lines = 0;
    let mut has_expr = false;
    let unterminated = || SyntaxError {
        line,
        message: if triple {
            "unterminated triple-quoted string".into()
        } else {
            "unterminated string (a string must end on its line unless it is triple-quoted)".into()
        },
    };
    loop {
        let Some(&c) = chars.get(j) else {
            return Err(unterminated());
        };
        if c == quote
            && (!triple || (chars.get(j + 1) == Some(&quote) && chars.get(j + 2) == Some(&quote)))
        {
            j += if triple { 3 } else { 1 };
            break;
        }
        if c == '\n' {
            if !triple {
                return Err(unterminated());
            }
            lines += 1;
        }
        if c == '\\' {
            let Some(&n) = chars.get(j + 1) else {
                return Err(unterminated());
            };
            if n == '\n' {
                lines += 1;
            }
            if raw {
                value.push('\\');
                value.push(n);
                j += 2;
                continue;
            }
            j += 2;
            match n {
                '\n' => {}
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '0' => value.push('\0'),
                'a' => value.push('\x07'),
                'b' => value.push('\x08'),
                'f' => value.push('\x0c'),
                'v' => value.push('\x0b'),
                '\\' | '\'' | '"' => value.push(n),
                'x' | 'u' | 'U' => {
                    let len = match n {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.get(j..j + len).unwrap_or_default().iter().collect();
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) if hex.len() == len => value.push(ch),
                        _ => {
                            return Err(SyntaxError {
                                line: line + lines,
                                message: format!("bad escape \\{n}{hex} in a string"),
                            })
                        }
                    }
                    j += len;
                }
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        if fstring && (c == '{' || c == '}') {
            if chars.get(j + 1) == Some(&c) {
                value.push(c);
                j += 2;
                continue;
            }
            if c == '{' {
                has_expr = true;
            }
        }
        value.push(c);
        j += 1;
    }
    Ok(((!has_expr).then_some(value), j, lines))
}

/// What names mean at a point of the file: variables bound to literals, or to code, imports.
#[derive(Default)]
struct Scope {
    vars: BTreeMap<String, Result<Value, NotLiteral>>,
    /// Imported name → its dotted origin.
    imports: BTreeMap<String, String>,
}

/// Parses the file into its items; only a file Python would refuse is an error.
pub fn parse(src: &str) -> Result<Vec<Item>, SyntaxError> {
    let lines = tokenize(src)?;
    let mut items = Vec::new();
    let mut scope = Scope::default();
    let mut k = 0;
    while k < lines.len() {
        let l = &lines[k];
        let first = match &l.tokens[0].tok {
            Tok::Name(n) => n.as_str(),
            Tok::Op("@") => "@",
            _ => "",
        };
        let block_keyword = matches!(
            first,
            "def"
                | "class"
                | "if"
                | "elif"
                | "else"
                | "for"
                | "while"
                | "with"
                | "try"
                | "except"
                | "finally"
                | "async"
                | "@"
                | "match"
        ) && (first != "match"
            || l.tokens.last().map(|t| &t.tok) == Some(&Tok::Op(":")));
        if block_keyword {
            // The block: this line and every following one indented deeper, and the
            // clauses that continue it (elif/else/except/finally at the same indentation).
            let mut end = k + 1;
            while end < lines.len()
                && (lines[end].indent > l.indent
                    || (lines[end].indent == l.indent
                        && matches!(
                            lines[end].tokens[0].tok,
                            Tok::Name(ref n) if matches!(n.as_str(), "elif" | "else" | "except" | "finally")
                        )))
            {
                end += 1;
            }
            let end_line = lines[end - 1].end_line;
            let what = match first {
                "def" | "async" => {
                    let name = l.tokens.iter().find_map(|t| match &t.tok {
                        Tok::Name(n) if n != "def" && n != "async" => Some(n.clone()),
                        _ => None,
                    });
                    if let Some(name) = &name {
                        scope.vars.insert(
                            name.clone(),
                            Err(NotLiteral::Callable(format!(
                                "the function {name} (defined on line {})",
                                l.line
                            ))),
                        );
                    }
                    format!("a function definition (def {})", name.unwrap_or_default())
                }
                "class" => "a class definition".to_owned(),
                "@" => "a decorated definition".to_owned(),
                other if other.starts_with(['a', 'e', 'i', 'o', 'u']) => {
                    format!("an `{other}` block")
                }
                other => format!("a `{other}` block"),
            };
            items.push(Item::Code {
                line: l.line,
                end_line,
                what: what.clone(),
            });
            // Settings inside the block are reported one by one: each depends on code.
            for inner in &lines[k + 1..end] {
                if let Some((path, op, _)) = setting_shape(&inner.tokens) {
                    items.push(Item::Setting {
                        line: inner.line,
                        path,
                        op,
                        value: Err(NotLiteral::Code(format!(
                            "set inside {what} on line {}: only running the code decides it",
                            l.line
                        ))),
                        in_block: Some((l.line, what.clone())),
                        item_lines: Vec::new(),
                    });
                }
            }
            k = end;
            continue;
        }
        for stmt in split_semicolons(&l.tokens) {
            items.extend(statement(stmt, l, &mut scope));
        }
        k += 1;
    }
    Ok(items)
}

fn split_semicolons(tokens: &[Token]) -> Vec<&[Token]> {
    tokens
        .split(|t| t.tok == Tok::Op(";"))
        .filter(|s| !s.is_empty())
        .collect()
}

/// `c.A.b = …`, `c.A.b += …`, `c.A.b.update(…)` …: the path, the operation and where the
/// value's tokens start (and end, for a method call: before its closing parenthesis).
fn setting_shape(tokens: &[Token]) -> Option<(Vec<String>, Op, (usize, usize))> {
    if tokens.first()?.tok != Tok::Name("c".into()) {
        return None;
    }
    let mut path = Vec::new();
    let mut i = 1;
    while tokens.get(i).map(|t| &t.tok) == Some(&Tok::Op(".")) {
        match &tokens.get(i + 1)?.tok {
            Tok::Name(n) => path.push(n.clone()),
            _ => return None,
        }
        i += 2;
    }
    let n = tokens.len();
    match &tokens.get(i)?.tok {
        Tok::Op("=") if path.len() >= 2 => Some((path, Op::Assign, (i + 1, n))),
        Tok::Op("+=") if path.len() >= 2 => Some((path, Op::AddAssign, (i + 1, n))),
        Tok::Op("(") if path.len() >= 3 && tokens[n - 1].tok == Tok::Op(")") => {
            let op = match path.last().map(String::as_str) {
                Some("update") => Op::Update,
                Some("append") => Op::Append,
                Some("extend") => Op::Extend,
                _ => return None,
            };
            path.pop();
            Some((path, op, (i + 1, n - 1)))
        }
        // `c.A.b["key"] = v`: an update of one key.
        Tok::Op("[") if path.len() >= 2 => {
            let close = matching(tokens, i)?;
            (tokens.get(close + 1)?.tok == Tok::Op("=")).then_some((path, Op::Update, (i, n)))
        }
        _ => None,
    }
}

/// The line each item of a display (`[…]`, `(…)`, `{…}`) starts on, or of the one value
/// inside a call (`.extend([…])` passes its list); empty for anything else.
fn item_lines(tokens: &[Token]) -> Vec<usize> {
    let Some(first) = tokens.first() else {
        return Vec::new();
    };
    if !matches!(first.tok, Tok::Op("(" | "[" | "{"))
        || matching(tokens, 0) != Some(tokens.len() - 1)
    {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for t in &tokens[1..tokens.len() - 1] {
        if at_item && depth == 0 {
            lines.push(t.line);
            at_item = false;
        }
        match t.tok {
            Tok::Op("(" | "[" | "{") => depth += 1,
            Tok::Op(")" | "]" | "}") => depth -= 1,
            Tok::Op(",") if depth == 0 => at_item = true,
            _ => {}
        }
    }
    lines
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Op("(" | "[" | "{") => depth += 1,
            Tok::Op(")" | "]" | "}") => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// One simple statement.
fn statement(tokens: &[Token], l: &Logical, scope: &mut Scope) -> Vec<Item> {
    let line = tokens[0].line;
    let code = |what: String| Item::Code {
        line,
        end_line: l.end_line,
        what,
    };
    let names: Vec<&str> = tokens
        .iter()
        .map(|t| match &t.tok {
            Tok::Name(n) => n.as_str(),
            Tok::Op(o) => o,
            _ => "",
        })
        .collect();
    match names.as_slice() {
        ["import", ..] | ["from", ..] => {
            record_import(&names, scope);
            return vec![Item::Import {
                line,
                text: names.join(" ").replace(" . ", "."),
            }];
        }
        ["c", "=", "get_config", "(", ")"] => return Vec::new(),
        _ => {}
    }
    if let Some((path, op, (start, end))) = setting_shape(tokens) {
        let subscript =
            tokens[start].tok == Tok::Op("[") && matches!(tokens[start - 1].tok, Tok::Name(_));
        let value = if subscript {
            // c.A.b[key] = value
            let close = matching(tokens, start).unwrap_or(start);
            let key = expression(&tokens[start + 1..close], scope);
            let value = expression(&tokens[close + 2..end], scope);
            key.and_then(|k| value.map(|v| Value::Dict(vec![(k, v)])))
        } else {
            expression(&tokens[start..end], scope)
        };
        return vec![Item::Setting {
            line,
            path,
            op,
            value,
            in_block: None,
            item_lines: item_lines(&tokens[start..end]),
        }];
    }
    // `name = value` (also `a = b = value`): a module variable, used by later settings.
    if let [Token {
        tok: Tok::Name(name),
        ..
    }, Token {
        tok: Tok::Op("="), ..
    }, rest @ ..] = tokens
    {
        if name != "c" && !rest.is_empty() {
            let value = expression(rest, scope);
            scope.vars.insert(
                name.clone(),
                value
                    .map_err(|e| NotLiteral::Code(format!("{name} (bound on line {line} to {e})"))),
            );
            return Vec::new();
        }
    }
    // `name += value` on a module variable.
    if let [Token {
        tok: Tok::Name(name),
        ..
    }, Token {
        tok: Tok::Op("+="), ..
    }, rest @ ..] = tokens
    {
        if let Some(Ok(old)) = scope.vars.get(name).cloned() {
            let value = expression(rest, scope).and_then(|v| add(old, v));
            scope.vars.insert(name.clone(), value);
            return Vec::new();
        }
    }
    vec![code(format!("Python code (`{}`)", show(tokens, 10)))]
}

/// The first `n` tokens as Python text, for messages (`os.environ.get("X" …`).
fn show(tokens: &[Token], n: usize) -> String {
    let mut out = String::new();
    let mut glue = true;
    for t in tokens.iter().take(n) {
        let text = match &t.tok {
            Tok::Name(n) => n.clone(),
            Tok::Op(o) => (*o).to_owned(),
            Tok::Int(i) => i.to_string(),
            Tok::Float(f) => f.to_string(),
            Tok::Str(Some(s)) => format!("{s:?}"),
            Tok::Str(None) => "f\"…\"".into(),
        };
        let tight_before = matches!(
            t.tok,
            Tok::Op(")" | "]" | "}" | "," | "." | "(" | "[" | ":")
        );
        if !glue && !tight_before {
            out.push(' ');
        }
        glue = matches!(t.tok, Tok::Op("(" | "[" | "{" | "."));
        out.push_str(&text);
    }
    if tokens.len() > n {
        out.push_str(" …");
    }
    out
}

fn record_import(names: &[&str], scope: &mut Scope) {
    match names {
        ["import", rest @ ..] => {
            // import a.b as x, c
            for part in rest.split(|n| *n == ",") {
                let dotted: Vec<&str> = part
                    .iter()
                    .take_while(|n| **n != "as")
                    .copied()
                    .filter(|n| *n != ".")
                    .collect();
                let module = dotted.join(".");
                match part.iter().position(|n| *n == "as") {
                    Some(p) if p + 1 < part.len() => {
                        scope.imports.insert(part[p + 1].to_owned(), module);
                    }
                    _ => {
                        if let Some(first) = dotted.first() {
                            scope
                                .imports
                                .insert((*first).to_owned(), (*first).to_owned());
                        }
                    }
                }
            }
        }
        ["from", rest @ ..] => {
            let Some(at) = rest.iter().position(|n| *n == "import") else {
                return;
            };
            let module: String = rest[..at].concat();
            let imported: Vec<&str> = rest[at + 1..]
                .iter()
                .copied()
                .filter(|n| !matches!(*n, "(" | ")"))
                .collect();
            for part in imported.split(|n| *n == ",") {
                match part {
                    [name] => {
                        scope
                            .imports
                            .insert((*name).to_owned(), format!("{module}.{name}"));
                    }
                    [name, "as", alias] => {
                        scope
                            .imports
                            .insert((*alias).to_owned(), format!("{module}.{name}"));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Evaluates a literal expression: `a + b`, `-x`, `a * b`, displays, names of variables.
fn expression(tokens: &[Token], scope: &Scope) -> Result<Value, NotLiteral> {
    let mut p = Parser {
        tokens,
        pos: 0,
        scope,
    };
    let v = p.sum()?;
    if p.pos < tokens.len() {
        return Err(p.unsupported());
    }
    Ok(v)
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    scope: &'a Scope,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// What the code at the current position is, in words.
    fn unsupported(&self) -> NotLiteral {
        let rest = &self.tokens[self.pos.min(self.tokens.len())..];
        let text = show(rest, 10);
        if matches!(rest.first().map(|t| &t.tok), Some(Tok::Name(n)) if n == "lambda") {
            return NotLiteral::Callable("a lambda".into());
        }
        NotLiteral::Code(format!("Python code (`{text}`)"))
    }

    fn sum(&mut self) -> Result<Value, NotLiteral> {
        let mut v = self.product()?;
        loop {
            if self.eat("+") {
                let r = self.product()?;
                v = add(v, r)?;
            } else if self.eat("-") {
                let r = self.product()?;
                v = arith(v, r, '-')?;
            } else {
                return Ok(v);
            }
        }
    }

    fn product(&mut self) -> Result<Value, NotLiteral> {
        let mut v = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => '*',
                Some(Tok::Op("/")) => '/',
                Some(Tok::Op("//")) => 'd',
                _ => return Ok(v),
            };
            self.pos += 1;
            let r = self.unary()?;
            v = arith(v, r, op)?;
        }
    }

    fn unary(&mut self) -> Result<Value, NotLiteral> {
        if self.eat("-") {
            return match self.unary()? {
                Value::Int(i) => Ok(Value::Int(-i)),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(NotLiteral::Code(format!("minus {}", other.kind()))),
            };
        }
        if self.eat("+") {
            return self.unary();
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Value, NotLiteral> {
        let start = self.pos;
        let Some(tok) = self.peek().cloned() else {
            return Err(NotLiteral::Code("a missing value".into()));
        };
        let value = match tok {
            Tok::Int(i) => {
                self.pos += 1;
                Value::Int(i)
            }
            Tok::Float(f) => {
                self.pos += 1;
                Value::Float(f)
            }
            Tok::Str(_) => {
                // Adjacent literals are one string.
                let mut s = String::new();
                while let Some(Tok::Str(part)) = self.peek() {
                    match part {
                        Some(p) => s.push_str(p),
                        None => {
                            return Err(NotLiteral::Code(
                                "an f-string with expressions in it".into(),
                            ))
                        }
                    }
                    self.pos += 1;
                }
                Value::Str(s)
            }
            Tok::Name(n) => {
                self.pos += 1;
                match n.as_str() {
                    "True" => Value::Bool(true),
                    "False" => Value::Bool(false),
                    "None" => Value::None,
                    "lambda" => {
                        self.pos = start;
                        return Err(self.unsupported());
                    }
                    _ => self.name(n, start)?,
                }
            }
            Tok::Op("(") => {
                self.pos += 1;
                if self.eat(")") {
                    Value::Tuple(Vec::new())
                } else {
                    let first = self.sum()?;
                    if self.eat(")") {
                        first
                    } else if self.eat(",") {
                        let mut items = vec![first];
                        items.extend(self.sequence(")")?);
                        Value::Tuple(items)
                    } else {
                        return Err(self.unsupported());
                    }
                }
            }
            Tok::Op("[") => {
                self.pos += 1;
                Value::List(self.sequence("]")?)
            }
            Tok::Op("{") => {
                self.pos += 1;
                self.brace()?
            }
            Tok::Op(_) => return Err(self.unsupported()),
        };
        // A call, subscript or attribute on a literal (`"a,b".split(",")`, `x[0]`) is code.
        if matches!(self.peek(), Some(Tok::Op("(" | "[" | "."))) {
            self.pos = start;
            return Err(self.unsupported());
        }
        Ok(value)
    }

    /// A name (maybe dotted): a module variable, an imported class, or code.
    fn name(&mut self, first: String, start: usize) -> Result<Value, NotLiteral> {
        let mut dotted = vec![first.clone()];
        while self.peek() == Some(&Tok::Op(".")) {
            match self.tokens.get(self.pos + 1).map(|t| &t.tok) {
                Some(Tok::Name(n)) => {
                    dotted.push(n.clone());
                    self.pos += 2;
                }
                _ => break,
            }
        }
        if self.peek() == Some(&Tok::Op("(")) && dotted.len() == 1 {
            // dict(a=1, b=2), set([…]), list((…)), tuple([…]): builtins that make literals.
            if let Some(v) = self.builtin(&first)? {
                return Ok(v);
            }
        }
        if self.peek() == Some(&Tok::Op("(")) {
            self.pos = start;
            return Err(NotLiteral::Code(format!(
                "a call to {}() (only running Python knows its result)",
                dotted.join(".")
            )));
        }
        if let Some(origin) = self.scope.imports.get(&first) {
            let mut full = vec![origin.clone()];
            full.extend(dotted[1..].iter().cloned());
            return Ok(Value::Class(full.join(".")));
        }
        if dotted.len() == 1 {
            if let Some(v) = self.scope.vars.get(&first) {
                return v.clone();
            }
        }
        Err(NotLiteral::Code(format!(
            "the name {} (not a literal bound earlier in the file)",
            dotted.join(".")
        )))
    }

    /// A call of a builtin that makes a literal, after its name: `dict(k=v, …)`, `dict()`,
    /// `set(…)`, `list(…)`, `tuple(…)` of a literal. None: not one of them (nothing eaten).
    fn builtin(&mut self, name: &str) -> Result<Option<Value>, NotLiteral> {
        if !matches!(name, "dict" | "set" | "list" | "tuple") {
            return Ok(None);
        }
        let at = self.pos;
        self.pos += 1; // (
        if self.eat(")") {
            return Ok(Some(match name {
                "dict" => Value::Dict(Vec::new()),
                "set" => Value::Set(Vec::new()),
                "list" => Value::List(Vec::new()),
                _ => Value::Tuple(Vec::new()),
            }));
        }
        if name == "dict" {
            let mut pairs = Vec::new();
            loop {
                let key = match (
                    self.peek().cloned(),
                    self.tokens.get(self.pos + 1).map(|t| &t.tok),
                ) {
                    (Some(Tok::Name(k)), Some(Tok::Op("="))) => k,
                    _ => {
                        self.pos = at;
                        return Ok(None);
                    }
                };
                self.pos += 2;
                pairs.push((Value::Str(key), self.sum()?));
                let comma = self.eat(",");
                if self.eat(")") {
                    return Ok(Some(Value::Dict(pairs)));
                }
                if !comma {
                    return Err(self.unsupported());
                }
            }
        }
        let inner = self.sum()?;
        if !self.eat(")") {
            return Err(self.unsupported());
        }
        let items = match inner {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => v,
            other => return Err(NotLiteral::Code(format!("{name}() of {}", other.kind()))),
        };
        Ok(Some(match name {
            "set" => Value::Set(items),
            "list" => Value::List(items),
            _ => Value::Tuple(items),
        }))
    }

    /// Items up to `close`, separated by commas (a trailing one allowed).
    fn sequence(&mut self, close: &str) -> Result<Vec<Value>, NotLiteral> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.sum()?);
            if matches!(self.peek(), Some(Tok::Name(n)) if n == "for") {
                return Err(NotLiteral::Code("a comprehension".into()));
            }
            if !self.eat(",") {
                if self.eat(close) {
                    return Ok(items);
                }
                return Err(self.unsupported());
            }
        }
    }

    /// After `{`: a dict or a set.
    fn brace(&mut self) -> Result<Value, NotLiteral> {
        if self.eat("}") {
            return Ok(Value::Dict(Vec::new()));
        }
        if self.eat("**") {
            return Err(NotLiteral::Code("a dict unpacked with **".into()));
        }
        let first = self.sum()?;
        if self.eat(":") {
            let mut pairs = vec![(first, self.sum()?)];
            loop {
                if matches!(self.peek(), Some(Tok::Name(n)) if n == "for") {
                    return Err(NotLiteral::Code("a comprehension".into()));
                }
                if self.eat("}") {
                    return Ok(Value::Dict(pairs));
                }
                if !self.eat(",") {
                    return Err(self.unsupported());
                }
                if self.eat("}") {
                    return Ok(Value::Dict(pairs));
                }
                let k = self.sum()?;
                if !self.eat(":") {
                    return Err(self.unsupported());
                }
                pairs.push((k, self.sum()?));
            }
        }
        let mut items = vec![first];
        if self.eat(",") {
            items.extend(self.sequence("}")?);
        } else if !self.eat("}") {
            return Err(self.unsupported());
        }
        Ok(Value::Set(items))
    }
}

/// `a + b` for strings, lists, tuples and numbers.
pub fn add(a: Value, b: Value) -> Result<Value, NotLiteral> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(Value::Str(x + &y)),
        (Value::List(mut x), Value::List(y)) => {
            x.extend(y);
            Ok(Value::List(x))
        }
        (Value::Tuple(mut x), Value::Tuple(y)) => {
            x.extend(y);
            Ok(Value::Tuple(x))
        }
        (a, b) => arith(a, b, '+'),
    }
}

fn arith(a: Value, b: Value, op: char) -> Result<Value, NotLiteral> {
    let float = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (&a, &b) {
        (Value::Int(x), Value::Int(y)) if op != '/' => {
            let r = match op {
                '+' => x.checked_add(*y),
                '-' => x.checked_sub(*y),
                '*' => x.checked_mul(*y),
                _ => (*y != 0).then(|| x.div_euclid(*y)),
            };
            r.map(Value::Int)
                .ok_or_else(|| NotLiteral::Code("an arithmetic overflow".into()))
        }
        _ => match (float(&a), float(&b)) {
            (Some(x), Some(y)) => Ok(Value::Float(match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                '/' => x / y,
                _ => (x / y).floor(),
            })),
            _ => Err(NotLiteral::Code(format!("{} {op} {}", a.kind(), b.kind()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(src: &str) -> Vec<(usize, String, Op, Result<Value, NotLiteral>)> {
        parse(src)
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Setting {
                    line,
                    path,
                    op,
                    value,
                    ..
                } => Some((line, path.join("."), op, value)),
                _ => None,
            })
            .collect()
    }

    fn value(src: &str) -> Value {
        let s = settings(src);
        assert_eq!(s.len(), 1, "{s:?}");
        s[0].3.clone().unwrap_or_else(|e| panic!("{e}"))
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn literals_of_every_kind() {
        assert_eq!(value("c.A.b = 'x'"), s("x"));
        assert_eq!(value("c.A.b = \"a\" 'b'  r'\\d'"), s("ab\\d"));
        assert_eq!(value("c.A.b = '''one\ntwo'''\n"), s("one\ntwo"));
        assert_eq!(value("c.A.b = \"a\\tb\\n\\x41\\u00e9\""), s("a\tb\nAé"));
        assert_eq!(value("c.A.b = 'a' + \"b\" + 'c'"), s("abc"));
        assert_eq!(value("c.A.b = f'plain {{x}}'"), s("plain {x}"));
        assert_eq!(value("c.A.b = 12 * 3600"), Value::Int(43200));
        assert_eq!(value("c.A.b = -1_000"), Value::Int(-1000));
        assert_eq!(value("c.A.b = 0x10"), Value::Int(16));
        assert_eq!(value("c.A.b = 1.5e3"), Value::Float(1500.0));
        assert_eq!(value("c.A.b = True"), Value::Bool(true));
        assert_eq!(value("c.A.b = None"), Value::None);
        assert_eq!(
            value("c.A.b = [1, (2,), {3}, {'k': [4,]},]"),
            Value::List(vec![
                Value::Int(1),
                Value::Tuple(vec![Value::Int(2)]),
                Value::Set(vec![Value::Int(3)]),
                Value::Dict(vec![(s("k"), Value::List(vec![Value::Int(4)]))]),
            ])
        );
        assert_eq!(value("c.A.b = {}"), Value::Dict(vec![]));
        assert_eq!(value("c.A.b = ()"), Value::Tuple(vec![]));
        assert_eq!(
            value("c.A.b = (\n  'a'  # comment\n  'b'\n)"),
            s("ab"),
            "implicit concatenation across lines in brackets"
        );
        assert_eq!(value("c.A.b = 'a' \\\n  'b'"), s("ab"));
    }

    #[test]
    fn operations_and_lines() {
        let got = settings(
            "c = get_config()  # noqa\n\nc.Spawner.env_keep.append('X')\nc.Spawner.args.extend(['--a'])\nc.Spawner.environment.update({'A': '1'})\nc.Spawner.args += ['--b']\nc.Spawner.environment['B'] = '2'; c.JupyterHub.port = 8000\n",
        );
        let shape: Vec<(usize, &str, Op)> = got
            .iter()
            .map(|(l, p, o, _)| (*l, p.as_str(), *o))
            .collect();
        assert_eq!(
            shape,
            vec![
                (3, "Spawner.env_keep", Op::Append),
                (4, "Spawner.args", Op::Extend),
                (5, "Spawner.environment", Op::Update),
                (6, "Spawner.args", Op::AddAssign),
                (7, "Spawner.environment", Op::Update),
                (7, "JupyterHub.port", Op::Assign),
            ]
        );
        assert_eq!(got[4].3, Ok(Value::Dict(vec![(s("B"), s("2"))])));
    }

    #[test]
    fn variables_and_imports() {
        let items = parse(
            "import os\nfrom batchspawner import SlurmSpawner\nimport wrapspawner as ws\nprefix = '/opt/'\nprefix += 'jh'\nc.A.a = prefix + '/bin'\nc.A.b = SlurmSpawner\nc.A.c = ws.ProfilesSpawner\nhome = os.environ.get('HOME')\nc.A.d = home\n",
        )
        .unwrap();
        let imports = items
            .iter()
            .filter(|i| matches!(i, Item::Import { .. }))
            .count();
        assert_eq!(imports, 3);
        let got = settings(
            "from batchspawner import SlurmSpawner\nimport wrapspawner as ws\nimport os\nprefix = '/opt/'\nprefix += 'jh'\nc.A.a = prefix + '/bin'\nc.A.b = SlurmSpawner\nc.A.c = ws.ProfilesSpawner\nhome = os.environ.get('HOME')\nc.A.d = home\n",
        );
        assert_eq!(got[0].3, Ok(s("/opt/jh/bin")));
        assert_eq!(
            got[1].3,
            Ok(Value::Class("batchspawner.SlurmSpawner".into()))
        );
        assert_eq!(
            got[2].3,
            Ok(Value::Class("wrapspawner.ProfilesSpawner".into()))
        );
        let Err(NotLiteral::Code(why)) = &got[3].3 else {
            panic!("{:?}", got[3]);
        };
        assert!(
            why.contains("home (bound on line 9") && why.contains("os.environ.get"),
            "{why}"
        );
    }

    #[test]
    fn code_is_named_not_translated() {
        let src = "c = get_config()\ndef hook(spawner):\n    spawner.environment['X'] = '1'\n\nc.Spawner.pre_spawn_hook = hook\nc.Spawner.post_stop_hook = lambda s: None\nc.Spawner.cmd = os.environ.get('CMD', 'x')\nc.A.f = f'{x}'\nif True:\n    c.A.g = 1\nelse:\n    c.A.g = 2\nprint('hello')\nc.A.h = [x for x in y]\n";
        let items = parse(src).unwrap();
        let mut got = Vec::new();
        for i in &items {
            match i {
                Item::Code { line, what, .. } => got.push(format!("{line} code {what}")),
                Item::Setting {
                    line,
                    path,
                    value: Err(e),
                    ..
                } => got.push(format!(
                    "{line} {} {}",
                    path.join("."),
                    matches!(e, NotLiteral::Callable(_))
                )),
                other => got.push(format!("{other:?}")),
            }
        }
        assert_eq!(
            got,
            vec![
                "2 code a function definition (def hook)",
                "5 Spawner.pre_spawn_hook true",
                "6 Spawner.post_stop_hook true",
                "7 Spawner.cmd false",
                "8 A.f false",
                "9 code an `if` block",
                "10 A.g false",
                "12 A.g false",
                "13 code Python code (`print(\"hello\")`)",
                "14 A.h false",
            ]
        );
    }

    #[test]
    fn each_item_of_a_display_has_its_line() {
        let items = parse("c.JupyterHub.services = [\n    {'name': 'a'},\n\n    {'name': 'b',\n     'x': [1,\n 2]},\n]\nc.A.b.extend(['x',\n 'y'])\nc.A.c = 'no display'\n").unwrap();
        let lines: Vec<Vec<usize>> = items
            .iter()
            .filter_map(|i| match i {
                Item::Setting { item_lines, .. } => Some(item_lines.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(lines, vec![vec![2, 4], vec![8, 9], vec![]]);
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let e = parse("c.A.b = 'x'\nc.A.c = 'unterminated\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated string"), "{e}");
        let e = parse("c.A.b = '''x\n\n").unwrap_err();
        assert_eq!((e.line, e.message.contains("triple")), (1, true));
        let e = parse("c.A.b = [1,\n 2,\nc.A.c = 3\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("'[' is never closed"), "{e}");
        let e = parse("c.A.b = {'a': 1]\n").unwrap_err();
        assert!(e.message.contains("does not close '{'"), "{e}");
        let e = parse("x = 1\n)\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "unmatched ')'"));
    }
}
