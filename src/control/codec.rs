//! `ControlCodec`: the tokio-util `Decoder` that frames the control-mode
//! stream on LF and assembles `%begin` … `%end`/`%error` blocks.
