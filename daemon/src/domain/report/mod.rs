//! Rendering incidents for people: the narrative of a page and the post-incident review.

pub mod digest;
pub mod evidence;
pub mod narrative;
pub mod review;
