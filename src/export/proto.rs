//! The few protobuf encodings an ONNX file needs, written by hand: varints, fixed32 floats and
//! length-delimited fields (the wire format, protobuf.dev/programming-guides/encoding).
//! Messages are built inside out: a field holding a message takes its finished bytes.

/// One message being encoded; fields are appended in the order called.
#[derive(Default, Clone)]
pub struct Msg(Vec<u8>);

const VARINT: u64 = 0;
const FIXED32: u64 = 5;
const LEN: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub fn new() -> Msg {
        Msg::default()
    }

    fn key(&mut self, field: u32, wire: u64) {
        varint(&mut self.0, ((field as u64) << 3) | wire);
    }

    /// An int32, int64 or enum field (negative values as ten-byte two's complement, as protobuf does).
    pub fn int(mut self, field: u32, v: i64) -> Msg {
        self.key(field, VARINT);
        varint(&mut self.0, v as u64);
        self
    }

    pub fn float(mut self, field: u32, v: f32) -> Msg {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, b: &[u8]) -> Msg {
        self.key(field, LEN);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn string(self, field: u32, s: &str) -> Msg {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: &Msg) -> Msg {
        self.bytes(field, &m.0)
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_examples() {
        // protobuf's own examples: field 1 = 150 is 08 96 01; field 2 = "testing".
        assert_eq!(Msg::new().int(1, 150).finish(), [0x08, 0x96, 0x01]);
        assert_eq!(Msg::new().string(2, "testing").finish(), [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        assert_eq!(Msg::new().int(1, -1).finish().len(), 11, "negative ints take ten bytes");
        assert_eq!(Msg::new().float(2, 1.0).finish(), [0x15, 0, 0, 0x80, 0x3f]);
    }
}
