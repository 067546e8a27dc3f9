//! Finds the pipes of a shell command line, numbered as the protocol's
//! `breakpoints` count them: every `|` (or `|&`) outside quotes, escapes,
//! comments, subshells, command substitutions, parameter expansions and
//! `case` patterns, in order, across all pipelines of the line
//! (`a | b; c | d` has pipes 0 and 1).
//!
//! The grammar is POSIX sh with bash's `|&`. Here-documents are not
//! understood: a `|` in a here-document's body would be counted.

/// One pipe of a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipe {
    /// Byte offset of the `|`.
    pub offset: usize,
    /// `|&`: the writer's stderr goes into the pipe too.
    pub with_stderr: bool,
}

impl Pipe {
    /// Length of the operator in bytes.
    pub fn len(&self) -> usize {
        if self.with_stderr { 2 } else { 1 }
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a command line could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A quote, substitution or subshell is not closed.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// `( ... )` or `$( ... )`.
    Paren,
    /// `${ ... }`.
    Brace,
    /// `" ... "`.
    Double,
    /// `` ` ... ` ``.
    Backtick,
    /// `case ... esac`: `|` separates patterns, `)` ends one.
    Case,
}

impl Ctx {
    fn name(self) -> &'static str {
        match self {
            Ctx::Paren => "parenthesis",
            Ctx::Brace => "${ expansion",
            Ctx::Double => "double quote",
            Ctx::Backtick => "backquote",
            Ctx::Case => "case statement",
        }
    }
}

/// What `$` followed by `next` opens: `$(` (and `$((`) or `${`.
fn expansion(next: Option<u8>) -> Option<Ctx> {
    match next {
        Some(b'(') => Some(Ctx::Paren),
        Some(b'{') => Some(Ctx::Brace),
        _ => None,
    }
}

/// Bytes after which a new word starts.
fn ends_word(b: u8) -> bool {
    b.is_ascii_whitespace() || b";&|()<>".contains(&b)
}

/// The word starting at `i`, if `word` is there as a whole word.
fn word_at(line: &[u8], i: usize, word: &[u8]) -> bool {
    line.get(i..i + word.len()) == Some(word)
        && line.get(i + word.len()).is_none_or(|&b| ends_word(b))
}

/// Reserved words after which a command (such as `case`) may start.
const LEADING_KEYWORDS: &[&[u8]] = &[
    b"if", b"then", b"else", b"elif", b"while", b"until", b"do", b"{", b"!", b"time",
];

/// The top-level pipes of `line`, in order.
pub fn pipes(line: &str) -> Result<Vec<Pipe>, PipelineError> {
    let b = line.as_bytes();
    let mut found = Vec::new();
    let mut stack: Vec<Ctx> = Vec::new();
    let mut word_start = true;
    // Whether the next word is in command position, where `case` is a
    // keyword rather than an argument.
    let mut command_position = true;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let next = b.get(i + 1).copied();
        let mut step = 1;
        match stack.last().copied() {
            Some(Ctx::Double) => match c {
                b'\\' => step = 2,
                b'"' => {
                    stack.pop();
                }
                b'`' => stack.push(Ctx::Backtick),
                b'$' if expansion(next).is_some() => {
                    stack.extend(expansion(next));
                    step = 2;
                }
                _ => {}
            },
            Some(Ctx::Backtick) => match c {
                b'\\' => step = 2,
                b'`' => {
                    stack.pop();
                }
                _ => {}
            },
            top => match c {
                b'\\' => step = 2,
                b'\'' => {
                    let close = b
                        .get(i + 1..)
                        .and_then(|rest| rest.iter().position(|&x| x == b'\''))
                        .ok_or(PipelineError::Unterminated("single quote"))?;
                    step = close + 2;
                }
                b'"' => stack.push(Ctx::Double),
                b'`' => stack.push(Ctx::Backtick),
                b'$' if expansion(next).is_some() => {
                    stack.extend(expansion(next));
                    step = 2;
                }
                b'(' => stack.push(Ctx::Paren),
                // Inside `case`, `)` ends a pattern; a stray one at the top
                // is the shell's syntax error to report.
                b')' if top == Some(Ctx::Paren) => {
                    stack.pop();
                }
                b'}' if top == Some(Ctx::Brace) => {
                    stack.pop();
                }
                b'#' if word_start => {
                    step = b
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|&x| x == b'\n'))
                        .unwrap_or(b.len() - i);
                }
                b'c' if command_position
                    && word_start
                    && top != Some(Ctx::Brace)
                    && word_at(b, i, b"case") =>
                {
                    stack.push(Ctx::Case);
                    step = 4;
                }
                b'e' if word_start && top == Some(Ctx::Case) && word_at(b, i, b"esac") => {
                    stack.pop();
                    step = 4;
                }
                b'|' if next == Some(b'|') => step = 2,
                b'|' if top.is_none() => {
                    let with_stderr = next == Some(b'&');
                    found.push(Pipe {
                        offset: i,
                        with_stderr,
                    });
                    step = if with_stderr { 2 } else { 1 };
                }
                _ => {}
            },
        }
        let last = b.get(i + step - 1).copied().unwrap_or(b' ');
        if b";&|()\n".contains(&c) {
            command_position = true;
        } else if word_start && !c.is_ascii_whitespace() {
            command_position = LEADING_KEYWORDS.iter().any(|k| word_at(b, i, k));
        }
        word_start = ends_word(last) && !matches!(c, b'\\');
        i += step;
    }
    match stack.last() {
        Some(ctx) => Err(PipelineError::Unterminated(ctx.name())),
        None => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(line: &str) -> Vec<usize> {
        pipes(line).unwrap().iter().map(|p| p.offset).collect()
    }

    #[test]
    fn simple_pipelines() {
        assert_eq!(offsets("ls"), Vec::<usize>::new());
        assert_eq!(offsets("ls | grep png"), vec![3]);
        assert_eq!(
            offsets("printf 'a\\nb\\nc\\n' | grep -v b | tr a-z A-Z"),
            vec![19, 31]
        );
        assert_eq!(offsets("a|b|c"), vec![1, 3]);
    }

    #[test]
    fn all_pipelines_of_the_line_are_numbered() {
        assert_eq!(offsets("a | b; c | d && e | f"), vec![2, 9, 18]);
        assert_eq!(offsets("a | b\nc | d"), vec![2, 8]);
        assert_eq!(offsets("a | b & c | d"), vec![2, 10]);
    }

    #[test]
    fn or_is_not_a_pipe_but_pipe_ampersand_is() {
        assert_eq!(offsets("a || b"), Vec::<usize>::new());
        let p = pipes("a |& b | c").unwrap();
        assert_eq!(
            p,
            vec![
                Pipe {
                    offset: 2,
                    with_stderr: true
                },
                Pipe {
                    offset: 7,
                    with_stderr: false
                }
            ]
        );
    }

    #[test]
    fn quoted_and_escaped_pipes_are_not_pipes() {
        assert_eq!(offsets("echo 'a|b' | cat"), vec![11]);
        assert_eq!(offsets("echo \"a|b\" | cat"), vec![11]);
        assert_eq!(offsets("echo a\\|b | cat"), vec![10]);
        assert_eq!(offsets("echo \"it's | \\\" |\" | cat"), vec![19]);
        assert_eq!(offsets("grep 'x' | sed \"s/|/-/\""), vec![9]);
    }

    #[test]
    fn nested_commands_keep_their_pipes() {
        assert_eq!(offsets("(a | b) | c"), vec![8]);
        assert_eq!(offsets("echo $(a | b) | c"), vec![14]);
        assert_eq!(offsets("echo \"$(a | b | \"c|d\")\" | e"), vec![24]);
        assert_eq!(offsets("echo `a | b` | c"), vec![13]);
        assert_eq!(offsets("echo ${x:-a|b} | c"), vec![15]);
        assert_eq!(offsets("echo $((1|2)) | c"), vec![14]);
        assert_eq!(offsets("{ a | b; } | c"), vec![4, 11]);
    }

    #[test]
    fn comments_and_case_patterns() {
        assert_eq!(offsets("a | b # c | d"), vec![2]);
        assert_eq!(offsets("echo a#b | c"), vec![9]);
        assert_eq!(offsets("case $x in a|b) echo x;; esac | cat"), vec![30]);
        assert_eq!(offsets("echo case | cat"), vec![10]);
        assert_eq!(
            offsets("if true; then case a in a|b) :;; esac; fi | cat"),
            vec![42]
        );
    }

    #[test]
    fn unterminated_constructs_are_errors() {
        assert_eq!(
            pipes("echo 'a | b"),
            Err(PipelineError::Unterminated("single quote"))
        );
        assert_eq!(
            pipes("echo \"a | b"),
            Err(PipelineError::Unterminated("double quote"))
        );
        assert_eq!(
            pipes("echo $(a | b"),
            Err(PipelineError::Unterminated("parenthesis"))
        );
    }

    /// Whatever the input, the parser returns without panicking, and every
    /// pipe it reports is a `|` byte.
    #[test]
    fn arbitrary_input_is_safe() {
        let alphabet: &[u8] = b"ab |&'\"\\$(){}`#;\n case esac";
        let mut state: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (state >> 58) as usize;
            let line: Vec<u8> = (0..len)
                .map(|k| {
                    let r = state.rotate_left(k as u32 * 7);
                    alphabet[(r % alphabet.len() as u64) as usize]
                })
                .collect();
            let line = String::from_utf8(line).unwrap();
            if let Ok(found) = pipes(&line) {
                for p in found {
                    assert_eq!(line.as_bytes()[p.offset], b'|', "{line:?}");
                }
            }
        }
    }
}
