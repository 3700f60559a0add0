//! AMF0, the encoding of RTMP's commands (`connect`, `createStream`, `publish`, …) and
//! of `onMetaData`: just the types a publisher sends, decoded with bounded depth and
//! sizes, and encoded for the answers Plaza sends back.

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// An anonymous object (or an ECMA array): its properties in order.
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch (the time zone is ignored, as the format says).
    Date(f64),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// A property of an object, by name.
    pub fn property(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(properties) => properties.iter().find(|(key, _)| key == name).map(|(_, value)| value),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    #[error("AMF0 ends inside a value")]
    Truncated,
    #[error("AMF0 type marker {0:#04x} is not supported")]
    UnsupportedMarker(u8),
    #[error("AMF0 nests deeper than {NESTING_MAX}")]
    TooDeep,
    #[error("AMF0 holds more than {ITEMS_MAX} items")]
    TooMany,
    #[error("AMF0 string is not UTF-8")]
    NotUtf8,
}

/// Objects inside objects, at most.
const NESTING_MAX: usize = 8;
/// Properties or elements in one object or array, and values in one message, at most.
const ITEMS_MAX: usize = 1024;

/// Decodes every value in `bytes` (a command is a sequence of values).
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut reader = Reader { bytes, position: 0 };
    let mut values = Vec::new();
    while reader.position < bytes.len() {
        if values.len() == ITEMS_MAX {
            return Err(Amf0Error::TooMany);
        }
        values.push(reader.value(0)?);
    }
    Ok(values)
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], Amf0Error> {
        let end = self.position.checked_add(count).ok_or(Amf0Error::Truncated)?;
        let slice = self.bytes.get(self.position..end).ok_or(Amf0Error::Truncated)?;
        self.position = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, Amf0Error> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, Amf0Error> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(f64::from_be_bytes(array))
    }

    fn text(&mut self, length: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Amf0Error::NotUtf8)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth > NESTING_MAX {
            return Err(Amf0Error::TooDeep);
        }
        match self.u8()? {
            0x00 => Ok(Value::Number(self.f64()?)),
            0x01 => Ok(Value::Boolean(self.u8()? != 0)),
            0x02 => {
                let length = self.u16()?;
                Ok(Value::String(self.text(length)?))
            }
            0x03 => Ok(Value::Object(self.properties(depth)?)),
            0x05 => Ok(Value::Null),
            0x06 => Ok(Value::Undefined),
            0x08 => {
                // An ECMA array: a count (which writers get wrong, so it is only a hint),
                // then properties like an object's.
                self.u32()?;
                Ok(Value::Object(self.properties(depth)?))
            }
            0x0A => {
                let count = self.u32()?;
                if count > ITEMS_MAX {
                    return Err(Amf0Error::TooMany);
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::StrictArray(items))
            }
            0x0B => {
                let millis = self.f64()?;
                self.take(2)?;
                Ok(Value::Date(millis))
            }
            0x0C => {
                let length = self.u32()?;
                Ok(Value::String(self.text(length)?))
            }
            marker => Err(Amf0Error::UnsupportedMarker(marker)),
        }
    }

    /// Properties up to the object-end marker (an empty name, then 0x09).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut properties = Vec::new();
        loop {
            let length = self.u16()?;
            if length == 0 {
                if self.u8()? == 0x09 {
                    return Ok(properties);
                }
                return Err(Amf0Error::UnsupportedMarker(0x00));
            }
            if properties.len() == ITEMS_MAX {
                return Err(Amf0Error::TooMany);
            }
            let name = self.text(length)?;
            let value = self.value(depth + 1)?;
            properties.push((name, value));
        }
    }
}

/// Appends `value` to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(number) => {
            out.push(0x00);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Boolean(flag) => out.extend_from_slice(&[0x01, u8::from(*flag)]),
        Value::String(text) => {
            if let Ok(length) = u16::try_from(text.len()) {
                out.push(0x02);
                out.extend_from_slice(&length.to_be_bytes());
            } else {
                out.push(0x0C);
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            }
            out.extend_from_slice(text.as_bytes());
        }
        Value::Object(properties) => {
            out.push(0x03);
            for (name, value) in properties {
                let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
                out.extend_from_slice(&(name.len() as u16).to_be_bytes());
                out.extend_from_slice(name);
                encode(value, out);
            }
            out.extend_from_slice(&[0x00, 0x00, 0x09]);
        }
        Value::Null => out.push(0x05),
        Value::Undefined => out.push(0x06),
        Value::StrictArray(items) => {
            out.push(0x0A);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Date(millis) => {
            out.push(0x0B);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&[0x00, 0x00]);
        }
    }
}

/// Encodes a command or data message: its values one after another.
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

/// Shorthand for an object's properties.
pub fn object(properties: &[(&str, Value)]) -> Value {
    Value::Object(properties.iter().map(|(name, value)| (name.to_string(), value.clone())).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// `connect` as ffmpeg 5.1 sends it (captured bytes, rebuilt from the format).
    fn connect_command() -> Vec<u8> {
        let mut bytes = vec![0x02, 0x00, 0x07];
        bytes.extend_from_slice(b"connect");
        bytes.push(0x00);
        bytes.extend_from_slice(&1.0f64.to_be_bytes());
        bytes.push(0x03);
        for (name, value) in
            [("app", "live"), ("type", "nonprivate"), ("flashVer", "FMLE/3.0"), ("tcUrl", "rtmp://h/live")]
        {
            bytes.extend_from_slice(&(name.len() as u16).to_be_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0x02);
            bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        bytes
    }

    #[test]
    fn a_connect_command_decodes_to_its_name_transaction_and_properties() {
        let values = decode_all(&connect_command()).unwrap();
        assert_eq!(values[0], Value::String("connect".into()));
        assert_eq!(values[1], Value::Number(1.0));
        assert_eq!(values[2].property("app").and_then(Value::as_str), Some("live"));
        assert_eq!(values[2].property("tcUrl").and_then(Value::as_str), Some("rtmp://h/live"));
        assert_eq!(values[2].property("missing"), None);
    }

    #[test]
    fn every_value_survives_encoding_and_decoding() {
        let values = vec![
            Value::String("onStatus".into()),
            Value::Number(0.0),
            Value::Null,
            object(&[
                ("level", Value::String("status".into())),
                ("nested", object(&[("ok", Value::Boolean(true))])),
                ("list", Value::StrictArray(vec![Value::Number(1.5), Value::Undefined])),
                ("when", Value::Date(1.0e12)),
            ]),
            Value::String("長い".repeat(30_000)),
        ];
        assert_eq!(decode_all(&encode_all(&values)).unwrap(), values);
    }

    #[test]
    fn an_ecma_array_reads_as_an_object_whatever_its_count_says() {
        let mut bytes = vec![0x08, 0x00, 0x00, 0x00, 0x09];
        bytes.extend_from_slice(&[0x00, 0x05]);
        bytes.extend_from_slice(b"width");
        bytes.push(0x00);
        bytes.extend_from_slice(&640.0f64.to_be_bytes());
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values[0].property("width").and_then(Value::as_number), Some(640.0));
    }

    #[test]
    fn broken_or_hostile_input_is_an_error_not_a_panic() {
        let whole = connect_command();
        // Cutting between values (after "connect" and after the transaction) leaves valid
        // AMF0; cutting inside a value never does.
        for cut in (1..whole.len()).filter(|cut| ![10, 19].contains(cut)) {
            assert!(decode_all(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_all(&[0x0D]), Err(Amf0Error::UnsupportedMarker(0x0D)));
        assert_eq!(decode_all(&[0x02, 0x00, 0x01, 0xFF]), Err(Amf0Error::NotUtf8));
        let deep: Vec<u8> = std::iter::repeat_n([0x0A, 0, 0, 0, 1], 20).flatten().collect();
        assert_eq!(decode_all(&deep), Err(Amf0Error::TooDeep));
        assert_eq!(decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]), Err(Amf0Error::TooMany));
    }
}
