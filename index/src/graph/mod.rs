//! Graph index placeholder.
