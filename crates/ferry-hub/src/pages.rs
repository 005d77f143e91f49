//! HTML pages of the hub (to be written).
