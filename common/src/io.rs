//! Async adapters for the codec over any `AsyncRead`/`AsyncWrite` (a TLS
//! stream in practice). They open nothing themselves: the caller owns the
//! socket. Enabled with the `io` feature.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, DecodeError, EncodeError, HEADER_LEN};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Encode(#[from] EncodeError),
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
}

/// Read one frame. `Ok(None)` is a clean end of stream at a frame boundary.
/// The body buffer is allocated only after the length passed the `max` check,
/// and lives only while the frame is decoded.
pub async fn read_frame<R, T>(reader: &mut R, max: u32) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::TruncatedFrame) };
        }
        got += n;
    }
    let len = codec::body_len(header, max)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::TruncatedFrame,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(codec::decode_body(&body, max)?))
}

/// Encode and write one frame, then flush.
pub async fn write_frame<W, T>(writer: &mut W, msg: &T, max: u32) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = codec::encode(msg, max)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_MAX_FRAME;
    use crate::proto::AgentMsg;

    #[tokio::test]
    async fn frames_cross_a_stream_and_eof_is_clean_only_at_a_boundary() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for seq in 0..100 {
                write_frame(&mut a, &AgentMsg::Heartbeat { seq }, DEFAULT_MAX_FRAME).await.expect("write");
            }
        });
        for seq in 0..100 {
            let msg: Option<AgentMsg> = read_frame(&mut b, DEFAULT_MAX_FRAME).await.expect("read");
            assert_eq!(msg, Some(AgentMsg::Heartbeat { seq }));
        }
        writer.await.expect("writer");
        assert!(read_frame::<_, AgentMsg>(&mut b, DEFAULT_MAX_FRAME).await.expect("eof").is_none());

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.expect("write");
        drop(a);
        assert!(matches!(read_frame::<_, AgentMsg>(&mut b, DEFAULT_MAX_FRAME).await, Err(FrameError::TruncatedFrame)));
    }
}
