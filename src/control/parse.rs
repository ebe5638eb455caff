//! nom parsers, one per control-mode line form, each applied to one complete
//! framed line (without its LF).
