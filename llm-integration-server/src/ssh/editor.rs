//! The SSH shell's line editor: a pure state machine, fed the bytes a
//! terminal sends and answering with what to draw and what was typed.
//!
//! No IO and no clock: [`LineEditor::feed`] takes bytes and returns
//! [`Edit`]s, with the bytes to send back (echo, cursor moves) in
//! [`LineEditor::take_output`]. Keys: printable text inserts at the cursor;
//! Backspace (DEL or ^H) and Delete; Left, Right, Home, End, ^A, ^E;
//! Up and Down walk the history; ^U clears the line; ^C drops the line;
//! ^D on an empty line ends the session (else it deletes under the
//! cursor); Enter (CR, LF or CRLF) ends the line. Other control
//! characters and unknown escape sequences are ignored, never echoed.
//! A hidden line (a key being typed) is never echoed and never enters
//! the history.
//!
//! The terminal is assumed to be VT100-like (the client's, in raw mode,
//! as `ssh` leaves it when it allocates a pseudo-terminal): the line is
//! redrawn as `CR`, prompt, text, erase-to-end, cursor back. Redraws are
//! drawn once per [`LineEditor::take_output`], however many keys asked
//! for one, so what the editor answers stays within the size of the keys
//! fed plus one line.

/// Characters a line may hold at most; typing past it rings the bell.
pub const MAX_LINE_CHARS: usize = 4096;
/// Lines the history keeps at most (the oldest go first).
pub const MAX_HISTORY: usize = 200;

/// What the typing amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Enter: the line typed (not yet in the history if hidden).
    Line(String),
    /// Ctrl-C: the line was dropped.
    Interrupt,
    /// Ctrl-D on an empty line: the user leaves.
    Eof,
}

/// Where the decoder is within an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Started,
    /// After `ESC [` or `ESC O`, with the parameter bytes so far (only
    /// their count matters, bounded).
    Sequence {
        params: u8,
        first: u8,
    },
}

/// One line being edited, with the history of lines entered.
#[derive(Debug, Clone)]
pub struct LineEditor {
    prompt: String,
    line: Vec<char>,
    cursor: usize,
    hidden: bool,
    history: Vec<String>,
    /// While walking the history: the entry shown; the line being typed
    /// before the walk started is kept in `draft`.
    browsing: Option<usize>,
    draft: Vec<char>,
    escape: Escape,
    /// Bytes of a UTF-8 character not complete yet.
    pending: Vec<u8>,
    /// The last byte was CR (so an LF right after it is the same Enter).
    after_cr: bool,
    output: Vec<u8>,
    /// The line is to be drawn again before more output.
    dirty: bool,
}

impl LineEditor {
    /// A new editor; call [`LineEditor::start`] to show the first prompt.
    pub fn new() -> Self {
        LineEditor {
            prompt: String::new(),
            line: Vec::new(),
            cursor: 0,
            hidden: false,
            history: Vec::new(),
            browsing: None,
            draft: Vec::new(),
            escape: Escape::None,
            pending: Vec::new(),
            after_cr: false,
            output: Vec::new(),
            dirty: false,
        }
    }

    /// Starts a new line with `prompt`; `hidden` lines are not echoed nor
    /// remembered (a key).
    pub fn start(&mut self, prompt: &str, hidden: bool) {
        self.settle();
        self.prompt = prompt.to_owned();
        self.hidden = hidden;
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        self.output.extend_from_slice(prompt.as_bytes());
    }

    /// Whether the line being edited is empty.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// Removes the newest history entry if it is `line` (a line that held
    /// a key, say).
    pub fn forget(&mut self, line: &str) {
        if self.history.last().is_some_and(|l| l == line) {
            self.history.pop();
        }
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The bytes to send to the terminal since the last call: at most
    /// one redraw of the line, and the echo of what was fed.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.settle();
        std::mem::take(&mut self.output)
    }

    /// Feeds what the terminal sent. Input after an [`Edit`] is kept for
    /// the next line only when the caller starts one: the caller feeds
    /// the rest again after [`LineEditor::start`] (see
    /// [`LineEditor::feed_until_edit`]).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Edit> {
        let mut edits = Vec::new();
        for &b in bytes {
            if let Some(edit) = self.byte(b) {
                edits.push(edit);
            }
        }
        edits
    }

    /// Feeds `bytes` up to and including the first byte that completes an
    /// [`Edit`]; returns it and how many bytes were used.
    pub fn feed_until_edit(&mut self, bytes: &[u8]) -> (Option<Edit>, usize) {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(edit) = self.byte(b) {
                return (Some(edit), i + 1);
            }
        }
        (None, bytes.len())
    }

    fn byte(&mut self, b: u8) -> Option<Edit> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Started => {
                self.escape = match b {
                    b'[' | b'O' => Escape::Sequence {
                        params: 0,
                        first: 0,
                    },
                    _ => Escape::None,
                };
                return None;
            }
            Escape::Sequence { params, first } => {
                if (0x30..=0x3f).contains(&b) {
                    self.escape = Escape::Sequence {
                        params: params.saturating_add(1),
                        first: if params == 0 { b } else { first },
                    };
                } else {
                    self.escape = Escape::None;
                    self.sequence(b, params, first);
                }
                return None;
            }
            Escape::None => {}
        }
        if !self.pending.is_empty() || b >= 0x80 {
            self.utf8(b);
            return None;
        }
        match b {
            0x1b => self.escape = Escape::Started,
            b'\r' => {
                self.after_cr = true;
                return Some(self.enter());
            }
            b'\n' if after_cr => {}
            b'\n' => return Some(self.enter()),
            0x03 => {
                self.settle();
                self.output.extend_from_slice(b"^C\r\n");
                self.line.clear();
                self.cursor = 0;
                self.browsing = None;
                return Some(Edit::Interrupt);
            }
            0x04 => {
                if self.line.is_empty() {
                    self.settle();
                    self.output.extend_from_slice(b"\r\n");
                    return Some(Edit::Eof);
                }
                self.delete_under_cursor();
            }
            0x7f | 0x08 if self.cursor > 0 => {
                self.cursor -= 1;
                self.line.remove(self.cursor);
                self.redraw();
            }
            0x01 => self.move_to(0),
            0x05 => self.move_to(self.line.len()),
            0x02 => self.move_to(self.cursor.saturating_sub(1)),
            0x06 => self.move_to((self.cursor + 1).min(self.line.len())),
            0x15 => {
                self.line.clear();
                self.cursor = 0;
                self.redraw();
            }
            0x0b => {
                self.line.truncate(self.cursor);
                self.redraw();
            }
            0x20..=0x7e => self.insert(b as char),
            _ => {}
        }
        None
    }

    fn utf8(&mut self, b: u8) {
        self.pending.push(b);
        match std::str::from_utf8(&self.pending) {
            Ok(text) => {
                let chars: Vec<char> = text.chars().collect();
                self.pending.clear();
                for c in chars {
                    if !is_unprintable(c) {
                        self.insert(c);
                    }
                }
            }
            Err(e) if e.error_len().is_some() || self.pending.len() >= 4 => {
                // Not UTF-8: dropped.
                self.pending.clear();
            }
            Err(_) => {}
        }
    }

    fn sequence(&mut self, last: u8, params: u8, first: u8) {
        match (last, params) {
            (b'A', _) => self.history_up(),
            (b'B', _) => self.history_down(),
            (b'C', _) => self.move_to((self.cursor + 1).min(self.line.len())),
            (b'D', _) => self.move_to(self.cursor.saturating_sub(1)),
            (b'H', _) => self.move_to(0),
            (b'F', _) => self.move_to(self.line.len()),
            (b'~', 1) => match first {
                b'1' | b'7' => self.move_to(0),
                b'4' | b'8' => self.move_to(self.line.len()),
                b'3' => self.delete_under_cursor(),
                _ => {}
            },
            _ => {}
        }
    }

    fn insert(&mut self, c: char) {
        if self.line.len() >= MAX_LINE_CHARS {
            self.output.push(0x07);
            return;
        }
        self.line.insert(self.cursor, c);
        self.cursor += 1;
        if self.hidden {
            return;
        }
        if self.cursor == self.line.len() && !self.dirty {
            let mut buf = [0u8; 4];
            self.output
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            self.redraw();
        }
    }

    fn delete_under_cursor(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
            self.redraw();
        }
    }

    fn move_to(&mut self, cursor: usize) {
        if cursor != self.cursor {
            self.cursor = cursor;
            self.redraw();
        }
    }

    fn enter(&mut self) -> Edit {
        let text: String = self.line.iter().collect();
        self.settle();
        self.output.extend_from_slice(b"\r\n");
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
        if !self.hidden && !text.trim().is_empty() && self.history.last() != Some(&text) {
            if self.history.len() >= MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(text.clone());
        }
        Edit::Line(text)
    }

    fn history_up(&mut self) {
        if self.hidden || self.history.is_empty() {
            return;
        }
        let next = match self.browsing {
            None => {
                self.draft = self.line.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(next);
        self.line = self.history[next].chars().collect();
        self.cursor = self.line.len();
        self.redraw();
    }

    fn history_down(&mut self) {
        let Some(i) = self.browsing else { return };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.line = self.history[i + 1].chars().collect();
        } else {
            self.browsing = None;
            self.line = std::mem::take(&mut self.draft);
        }
        self.cursor = self.line.len();
        self.redraw();
    }

    /// Asks for the prompt and line to be drawn again (at the next
    /// [`LineEditor::settle`]).
    fn redraw(&mut self) {
        if !self.hidden {
            self.dirty = true;
        }
    }

    /// Draws the prompt and line again, with the cursor in place, if a
    /// redraw was asked for.
    fn settle(&mut self) {
        if !std::mem::replace(&mut self.dirty, false) || self.hidden {
            return;
        }
        self.output.push(b'\r');
        self.output.extend_from_slice(self.prompt.as_bytes());
        let text: String = self.line.iter().collect();
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\x1b[K");
        let back = self.line.len() - self.cursor;
        if back > 0 {
            self.output
                .extend_from_slice(format!("\x1b[{back}D").as_bytes());
        }
    }
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

/// Characters never inserted into a line (nor allowed in a prompt name):
/// controls, and those that reorder or hide text (bidirectional,
/// zero-width).
pub fn is_unprintable(c: char) -> bool {
    llm_integration_core::redact::printable_line(c.encode_utf8(&mut [0u8; 4])).len() != c.len_utf8()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(editor: &mut LineEditor, keys: &str) -> Vec<Edit> {
        editor.feed(keys.as_bytes())
    }

    fn line(editor: &mut LineEditor, keys: &str) -> String {
        match typed(editor, keys).as_slice() {
            [Edit::Line(l)] => l.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn editor() -> LineEditor {
        let mut e = LineEditor::new();
        e.start("exe.xyz ▶ ", false);
        e
    }

    #[test]
    fn typing_echoes_and_enter_ends_the_line() {
        let mut e = editor();
        assert_eq!(typed(&mut e, "integrations list"), vec![]);
        let out = String::from_utf8(e.take_output()).unwrap();
        assert_eq!(out, "exe.xyz ▶ integrations list");
        assert_eq!(line(&mut e, "\r"), "integrations list");
        assert_eq!(e.take_output(), b"\r\n");
    }

    #[test]
    fn cr_lf_and_lf_each_end_one_line() {
        let mut e = editor();
        assert_eq!(
            typed(&mut e, "a\r\nb\nc\r"),
            vec![
                Edit::Line("a".into()),
                Edit::Line("b".into()),
                Edit::Line("c".into())
            ]
        );
    }

    #[test]
    fn backspace_and_arrows_edit_in_the_middle() {
        let mut e = editor();
        // "helo", left, insert "l" -> "hello"; backspace at end twice, "p!" -> "help!"
        assert_eq!(line(&mut e, "helo\x1b[Dl\x1b[C\x7f\x7fp!\r"), "help!");
        // ^A then insert at the start; ^E then append; ^H is backspace too.
        assert_eq!(line(&mut e, "bc\x01a\x05dx\x08\r"), "abcd");
        // Delete (ESC [ 3 ~) removes under the cursor; Home/End sequences move.
        assert_eq!(line(&mut e, "xabc\x1b[H\x1b[3~\x1b[F!\r"), "abc!");
        // ^U clears; ^K kills to the end.
        assert_eq!(line(&mut e, "junk\x15ok\r"), "ok");
        assert_eq!(line(&mut e, "abcdef\x1b[D\x1b[D\x0b\r"), "abcd");
    }

    #[test]
    fn redraw_puts_the_cursor_back() {
        let mut e = editor();
        typed(&mut e, "abc");
        e.take_output();
        typed(&mut e, "\x1b[D\x1b[D");
        let out = String::from_utf8(e.take_output()).unwrap();
        assert!(out.ends_with("\rexe.xyz ▶ abc\x1b[K\x1b[2D"), "{out:?}");
    }

    #[test]
    fn up_and_down_walk_the_history_and_keep_the_draft() {
        let mut e = editor();
        line(&mut e, "first\r");
        line(&mut e, "second\r");
        line(&mut e, "second\r");
        assert_eq!(e.history(), ["first", "second"]);
        typed(&mut e, "dra");
        assert_eq!(line(&mut e, "\x1b[A\x1b[A\x1b[A\r"), "first");
        assert_eq!(e.history(), ["first", "second", "first"]);
        typed(&mut e, "dra");
        // Up, up, down: back to the newest entry.
        assert_eq!(line(&mut e, "\x1b[A\x1b[A\x1b[B\r"), "first");
        typed(&mut e, "draft");
        assert_eq!(line(&mut e, "\x1b[A\x1b[B\r"), "draft");
        // SS3 arrows (application cursor mode) work too.
        assert_eq!(line(&mut e, "\x1bOA\r"), "draft");
    }

    #[test]
    fn ctrl_c_drops_the_line_and_ctrl_d_leaves_on_an_empty_one() {
        let mut e = editor();
        assert_eq!(typed(&mut e, "oops\x03"), vec![Edit::Interrupt]);
        assert!(String::from_utf8(e.take_output())
            .unwrap()
            .ends_with("^C\r\n"));
        e.start("p ", false);
        // ^D within a line deletes under the cursor; on an empty line leaves.
        assert_eq!(line(&mut e, "ab\x01\x04\r"), "b");
        assert_eq!(typed(&mut e, "\x04"), vec![Edit::Eof]);
        assert!(!e.history().contains(&"oops".to_owned()));
    }

    #[test]
    fn a_line_can_be_forgotten() {
        let mut e = editor();
        line(&mut e, "kept\r");
        line(&mut e, "secret\r");
        e.forget("other");
        e.forget("secret");
        assert_eq!(e.history(), ["kept"]);
    }

    #[test]
    fn hidden_lines_are_not_echoed_nor_remembered() {
        let mut e = LineEditor::new();
        e.start("openai key: ", true);
        e.take_output();
        assert_eq!(line(&mut e, "sk-secret\x7fT\x1b[A\r"), "sk-secreT");
        let out = e.take_output();
        assert_eq!(out, b"\r\n");
        assert!(e.history().is_empty());
    }

    #[test]
    fn unicode_is_inserted_and_controls_are_not() {
        let mut e = editor();
        // A bidi override and a zero-width space are dropped; é and ▶ kept.
        let keys = "é\u{202e}▶\u{200b}x\x07\x00\r";
        assert_eq!(line(&mut e, keys), "é▶x");
        // A UTF-8 character split across feeds.
        let bytes = "ü".as_bytes();
        assert!(e.feed(&bytes[..1]).is_empty());
        assert!(e.feed(&bytes[1..]).is_empty());
        assert_eq!(line(&mut e, "\r"), "ü");
        // Invalid UTF-8 is dropped.
        assert!(e.feed(&[0xff, 0xfe]).is_empty());
        assert_eq!(line(&mut e, "ok\r"), "ok");
    }

    #[test]
    fn unknown_escape_sequences_are_ignored_and_lines_are_bounded() {
        let mut e = editor();
        assert_eq!(line(&mut e, "a\x1b[1;5Cb\x1b[200~c\x1bxd\r"), "abcd");
        let long = "x".repeat(MAX_LINE_CHARS + 10);
        let l = line(&mut e, &format!("{long}\r"));
        assert_eq!(l.len(), MAX_LINE_CHARS);
        assert!(e.take_output().contains(&0x07));
    }

    #[test]
    fn keys_that_redraw_answer_with_one_redraw() {
        let mut e = editor();
        typed(&mut e, &"x".repeat(3000));
        e.take_output();
        // Left and Right, 5000 times each: the line is drawn once.
        let keys = "\x1b[D\x1b[C".repeat(5000);
        assert!(typed(&mut e, &keys).is_empty());
        let out = String::from_utf8(e.take_output()).unwrap();
        assert_eq!(out, format!("\rexe.xyz ▶ {}\x1b[K", "x".repeat(3000)));
        // A redraw still pending is drawn before the line ends.
        typed(&mut e, "\x1b[Dy");
        assert_eq!(line(&mut e, "\r"), format!("{}yx", "x".repeat(2999)));
        let out = String::from_utf8(e.take_output()).unwrap();
        assert!(out.ends_with("yx\x1b[K\x1b[1D\r\n"), "{out:?}");
    }

    #[test]
    fn feed_until_edit_stops_after_the_line() {
        let mut e = editor();
        let (edit, used) = e.feed_until_edit(b"one\rtwo\r");
        assert_eq!(edit, Some(Edit::Line("one".into())));
        assert_eq!(used, 4);
    }
}
