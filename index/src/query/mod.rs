//! Query placeholder.
