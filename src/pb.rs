//! Generated protobuf and gRPC code (from `proto/`). Only the edges (`codec`,
//! `net`, `rpc`) use these types; the rest of the node speaks domain types.

#![allow(missing_docs)]
#![allow(clippy::all)]

tonic::include_proto!("consort.v1");

/// Encoded file descriptor set of `proto/`, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("consort_descriptor");
