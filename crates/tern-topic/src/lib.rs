//! Placeholder: the topic library is being written.
