//! The median the sweep examples report: of an odd count the middle value, of an even count the
//! upper of the two middle ones (no averaging, so it is always a measured value).

/// The median of `values` (which must not be empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
