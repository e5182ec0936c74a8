//! Number formats (placeholder until the formats work lands).
