//! Lightbox renderer (in progress).
