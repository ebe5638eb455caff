//! tmux window layout strings (`#{window_layout}`, `select-layout`), checked
//! the way tmux 3.3a checks them (`layout-custom.c`), so that a sessions
//! file with a layout tmux would refuse is refused before anything is
//! created, with the reason.
//!
//! A layout is `CSUM,CELL`: `CSUM` four hex digits, a checksum of the rest;
//! a `CELL` is `WxH,X,Y` followed by `,ID` (a pane: the id is ignored when
//! the layout is applied) or by `{CELL,CELL…}` (side by side) or
//! `[CELL,CELL…]` (one above the other). Children of a split must span their
//! parent exactly (one column or row of border between each).

use std::fmt;

/// What a valid layout says about the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The window's width in columns.
    pub width: u32,
    /// The window's height in rows.
    pub height: u32,
    /// How many panes it lays out.
    pub panes: usize,
}

/// Why tmux would refuse a layout string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a layout starts with a 4-digit hex checksum and a comma (like `b25d,80x24,0,0,0`)")]
    NoChecksum,
    #[error("the checksum is {found:04x} but the layout after it sums to {expected:04x}")]
    Checksum { found: u16, expected: u16 },
    #[error("the layout is malformed at character {at}: {what}")]
    Syntax { at: usize, what: &'static str },
    #[error("the pane sizes do not add up to their parent's (a {dimension} of {parent})")]
    Sizes {
        dimension: &'static str,
        parent: u32,
    },
}

/// tmux's checksum of a layout (`layout_checksum`): a 16-bit rotate-and-add.
pub fn checksum(body: &str) -> u16 {
    body.bytes().fold(0u16, |sum, byte| {
        let rotated = (sum >> 1) | ((sum & 1) << 15);
        rotated.wrapping_add(u16::from(byte))
    })
}

/// Checks `layout` as `select-layout` would.
pub fn check(layout: &str) -> Result<Layout, LayoutError> {
    let (sum, body) = layout
        .split_once(',')
        .filter(|(sum, _)| sum.len() == 4 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(LayoutError::NoChecksum)?;
    let found = u16::from_str_radix(sum, 16).map_err(|_| LayoutError::NoChecksum)?;
    let expected = checksum(body);
    if found != expected {
        return Err(LayoutError::Checksum { found, expected });
    }
    let mut parser = Parser {
        text: body.as_bytes(),
        at: 0,
        offset: 5,
    };
    let mut root = parser.cell()?;
    if parser.at != parser.text.len() {
        return Err(parser.error("unexpected text after the layout"));
    }
    root.fix_top_size();
    root.check_sizes()?;
    Ok(Layout {
        width: root.width,
        height: root.height,
        panes: root.panes(),
    })
}

/// One cell of the layout tree.
struct Cell {
    width: u32,
    height: u32,
    split: Option<(Split, Vec<Cell>)>,
}

#[derive(Clone, Copy)]
enum Split {
    /// `{…}`: children side by side.
    LeftRight,
    /// `[…]`: children one above the other.
    TopBottom,
}

impl Cell {
    fn panes(&self) -> usize {
        match &self.split {
            None => 1,
            Some((_, children)) => children.iter().map(Cell::panes).sum(),
        }
    }

    /// What tmux does before checking: "older versions of tmux were able
    /// to generate layouts with an incorrect top cell size", so the top
    /// cell of a split takes the size its children add up to.
    fn fix_top_size(&mut self) {
        let Some((split, children)) = &self.split else {
            return;
        };
        let (mut width, mut height) = (0u32, 0u32);
        for child in children {
            match split {
                Split::LeftRight => {
                    width = width.saturating_add(child.width.saturating_add(1));
                    height = child.height.saturating_add(1);
                }
                Split::TopBottom => {
                    width = child.width.saturating_add(1);
                    height = height.saturating_add(child.height.saturating_add(1));
                }
            }
        }
        self.width = width.saturating_sub(1);
        self.height = height.saturating_sub(1);
    }

    /// tmux's `layout_check`.
    fn check_sizes(&self) -> Result<(), LayoutError> {
        let Some((split, children)) = &self.split else {
            return Ok(());
        };
        let (dimension, parent) = match split {
            Split::LeftRight => ("width", self.width),
            Split::TopBottom => ("height", self.height),
        };
        let mut total: u64 = 0;
        for child in children {
            let (along, across, parent_across) = match split {
                Split::LeftRight => (child.width, child.height, self.height),
                Split::TopBottom => (child.height, child.width, self.width),
            };
            if across != parent_across {
                return Err(LayoutError::Sizes { dimension, parent });
            }
            child.check_sizes()?;
            total += u64::from(along) + 1;
        }
        if total.saturating_sub(1) != u64::from(parent) {
            return Err(LayoutError::Sizes { dimension, parent });
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    /// Where `text` starts in the whole layout string, for messages.
    offset: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> LayoutError {
        LayoutError::Syntax {
            at: self.at + self.offset + 1,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn number(&mut self, what: &'static str) -> Result<u32, LayoutError> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| self.error(what))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), LayoutError> {
        if self.peek() != Some(byte) {
            return Err(self.error(what));
        }
        self.at += 1;
        Ok(())
    }

    /// tmux's `layout_construct`.
    fn cell(&mut self) -> Result<Cell, LayoutError> {
        let width = self.number("expected a width")?;
        self.expect(b'x', "expected `x` between width and height")?;
        let height = self.number("expected a height")?;
        self.expect(b',', "expected `,` before the x offset")?;
        self.number("expected an x offset")?;
        self.expect(b',', "expected `,` before the y offset")?;
        self.number("expected a y offset")?;
        // `,ID` for a pane, unless what follows the comma is the next
        // cell's `WxH` (tmux looks ahead for the `x` the same way).
        if self.peek() == Some(b',') {
            let saved = self.at;
            self.at += 1;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
            if self.peek() == Some(b'x') {
                self.at = saved;
            }
        }
        let split = match self.peek() {
            None | Some(b',' | b'}' | b']') => {
                return Ok(Cell {
                    width,
                    height,
                    split: None,
                });
            }
            Some(b'{') => Split::LeftRight,
            Some(b'[') => Split::TopBottom,
            Some(_) => return Err(self.error("expected `,`, `{` or `[` after a cell")),
        };
        let mut children = Vec::new();
        loop {
            self.at += 1;
            children.push(self.cell()?);
            if self.peek() != Some(b',') {
                break;
            }
        }
        match split {
            Split::LeftRight => self.expect(b'}', "expected `}` to close a split")?,
            Split::TopBottom => self.expect(b']', "expected `]` to close a split")?,
        }
        Ok(Cell {
            width,
            height,
            split: Some((split, children)),
        })
    }
}

/// A layout with its checksum, for a body built by hand (tests, benches).
pub fn with_checksum(body: &str) -> String {
    format!("{:04x},{body}", checksum(body))
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} with {} pane(s)",
            self.width, self.height, self.panes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_tmux_wrote_are_valid() {
        // Printed by tmux 3.3a's `#{window_layout}`.
        let table = [
            ("b261,80x24,0,0,4", (80, 24, 1)),
            ("c08a,100x30,0,0[100x15,0,0,0,100x14,0,16,1]", (100, 30, 2)),
            ("c88f,100x30,0,0[100x15,0,0,2,100x14,0,16,3]", (100, 30, 2)),
        ];
        for (layout, (width, height, panes)) in table {
            assert_eq!(
                check(layout),
                Ok(Layout {
                    width,
                    height,
                    panes
                }),
                "{layout}"
            );
        }
        let nested = with_checksum("80x24,0,0{40x24,0,0,1,39x24,41,0[39x12,41,0,2,39x11,41,13,3]}");
        assert_eq!(check(&nested).map(|l| l.panes), Ok(3));
        // Without pane ids, as people write them.
        let bare = with_checksum("80x24,0,0{40x24,0,0,39x24,41,0}");
        assert_eq!(check(&bare).map(|l| l.panes), Ok(2));
    }

    #[test]
    fn what_tmux_refuses_is_refused_with_the_reason() {
        assert_eq!(check("80x24,0,0,1"), Err(LayoutError::NoChecksum));
        assert_eq!(check("bb62"), Err(LayoutError::NoChecksum));
        assert!(matches!(
            check("bb62,200x50,0,0,1"),
            Err(LayoutError::Checksum { found: 0xbb62, .. })
        ));
        for body in [
            "80x24",
            "80x24,0,0{40x24,0,0,1",
            "80x24,0,0,1x",
            "80x24,0,0(40x24,0,0,1)",
            "80x24,0,0,1 ",
        ] {
            assert!(
                matches!(check(&with_checksum(body)), Err(LayoutError::Syntax { .. })),
                "{body}"
            );
        }
        // A top cell whose size is not its children's is corrected, as
        // tmux does; a mismatch below the top is not.
        let corrected = with_checksum("80x24,0,0{40x24,0,0,1,40x24,41,0,2}");
        assert_eq!(
            check(&corrected),
            Ok(Layout {
                width: 81,
                height: 24,
                panes: 2
            })
        );
        for body in [
            "80x24,0,0{40x24,0,0,1,39x23,41,0,2}",
            "80x24,0,0[80x24,0,0{40x24,0,0,1,40x24,41,0,2}]",
            "80x24,0,0{40x24,0,0[40x12,0,0,1,40x12,0,13,2],39x24,41,0,3}",
        ] {
            assert!(
                matches!(check(&with_checksum(body)), Err(LayoutError::Sizes { .. })),
                "{body}"
            );
        }
    }
}
