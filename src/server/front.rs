//! The client port's HTTP/2 front: mends the `:authority` etcdctl 3.4 sends.
//!
//! etcdctl 3.4 dials each endpoint of its per-endpoint commands (`endpoint
//! status`, `defrag`, `endpoint hashkv`, `move-leader`, `snapshot save`)
//! through grpc-go's passthrough resolver, which sends the endpoint as given,
//! `http://127.0.0.1:2379`, as the HTTP/2 `:authority`. grpc-go servers take
//! it; the h2 crate under tonic resets the stream as malformed, with no option
//! to relax that. So every client connection is read through [`Front`]: it
//! splits the client's bytes into frames and decodes the first header block
//! (HPACK). A gRPC client sends one `:authority` on all of a connection's
//! streams, so the first block decides:
//! * no scheme in it (every client but etcdctl 3.4's per-endpoint dials): the
//!   block goes to h2 as it came, and so does the rest of the connection;
//! * a scheme: this block and every later one are decoded (with a dynamic
//!   table that mirrors the client's encoder), the scheme is dropped, and the
//!   block is encoded again for h2 (with a table of its own, which h2's
//!   decoder mirrors). Other frames pass unchanged.
//!
//! Everything the server writes passes unchanged, and a connection that does
//! not open with the HTTP/2 preface (HTTP/1.1: `/health`, `/version`,
//! `/metrics`) passes through whole.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE
/// cannot be set lower); the front writes re-encoded header blocks in frames
/// no larger.
const MAX_FRAME: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as h2 advertises it (the protocol's default):
/// the most the client may grow the table it encodes with.
const HEADER_TABLE: usize = 4_096;
/// How much the front reads from the socket at once.
const READ_CHUNK: usize = 16_384;

/// A client connection as tonic reads it: see the module docs.
pub struct Front<IO> {
    io: IO,
    mode: Mode,
    /// Read from the client, not yet a whole frame.
    input: BytesMut,
    /// Frames ready for tonic.
    output: BytesMut,
    eof: bool,
}

enum Mode {
    /// Waiting for the first bytes: HTTP/2 or not.
    Preface,
    Frames(Box<HeaderBlocks>),
    /// Not HTTP/2: bytes pass as read.
    Pass,
}

impl<IO> Front<IO> {
    pub fn new(io: IO) -> Front<IO> {
        Front { io, mode: Mode::Preface, input: BytesMut::new(), output: BytesMut::new(), eof: false }
    }

    /// Moves every whole frame (or pass-through byte) from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match &mut self.mode {
                Mode::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.mode = Mode::Pass;
                    } else if n == PREFACE.len() {
                        self.output.extend_from_slice(&self.input.split_to(n));
                        self.mode = Mode::Frames(Box::default());
                    } else {
                        return Ok(());
                    }
                }
                Mode::Pass => {
                    self.output.extend_from_slice(&self.input.split());
                    return Ok(());
                }
                Mode::Frames(blocks) => {
                    if self.input.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
                    if self.input.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    match frame[3] {
                        HEADERS | CONTINUATION => {
                            if blocks.frame(&frame, &mut self.output)? == Next::PassRest {
                                self.mode = Mode::Pass;
                            }
                        }
                        _ => self.output.extend_from_slice(&frame),
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Front<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // A frame cut short by the client's close goes on as it is;
                // h2 reports it.
                if this.input.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.output = this.input.split();
                continue;
            }
            if matches!(this.mode, Mode::Pass) && this.input.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            }
            this.input.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Front<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Front<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> IO::ConnectInfo {
        self.io.connect_info()
    }
}

/// The header-block state of one HTTP/2 connection.
struct HeaderBlocks {
    /// Mirrors the client's encoder.
    decoder: Decoder<'static>,
    /// Mirrored by h2's decoder.
    encoder: Encoder<'static>,
    /// A block whose CONTINUATION frames are still to come.
    open: Option<Block>,
    /// Set once the first block had a scheme: every block is re-encoded.
    /// (Without one the connection turns to `Mode::Pass` and never comes
    /// back here.)
    rewriting: bool,
    /// The first block's frames as they came, until it is decided.
    first_frames: Vec<u8>,
}

/// What the front does after a header frame.
#[derive(Debug, PartialEq)]
enum Next {
    Frames,
    /// The connection needs no rewriting: the rest passes through.
    PassRest,
}

impl Default for HeaderBlocks {
    fn default() -> HeaderBlocks {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE);
        HeaderBlocks { decoder, encoder: Encoder::new(), open: None, rewriting: false, first_frames: Vec::new() }
    }
}

struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from the client: {what}"))
}

impl HeaderBlocks {
    /// Takes one HEADERS or CONTINUATION frame; writes the block once its
    /// last frame is in.
    fn frame(&mut self, frame: &[u8], out: &mut BytesMut) -> io::Result<Next> {
        if !self.rewriting {
            self.first_frames.extend_from_slice(frame);
        }
        let (kind, flags) = (frame[3], frame[4]);
        let stream: [u8; 4] = frame[5..9].try_into().expect("frame header");
        let mut payload = &frame[FRAME_HEADER..];
        if kind == HEADERS {
            if self.open.is_some() {
                return Err(malformed("HEADERS inside a header block"));
            }
            if flags & PADDED != 0 {
                let pad = *payload.first().ok_or_else(|| malformed("padding"))? as usize;
                if pad + 1 > payload.len() {
                    return Err(malformed("padding"));
                }
                payload = &payload[1..payload.len() - pad];
            }
            let priority = if flags & PRIORITY != 0 {
                if payload.len() < 5 {
                    return Err(malformed("priority"));
                }
                let (p, rest) = payload.split_at(5);
                payload = rest;
                Some(p.try_into().expect("5 bytes"))
            } else {
                None
            };
            self.open = Some(Block { stream, end_stream: flags & END_STREAM != 0, priority, fragment: Vec::new() });
        }
        let block = match self.open.as_mut() {
            Some(b) if b.stream == stream => b,
            _ => return Err(malformed("CONTINUATION outside its header block")),
        };
        block.fragment.extend_from_slice(payload);
        if flags & END_HEADERS == 0 {
            return Ok(Next::Frames);
        }
        let block = self.open.take().expect("open block");
        let mut fields = Vec::new();
        let mut schemed = false;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                let value = if &*name == b":authority" {
                    let bare = without_scheme(&value);
                    schemed |= bare.len() != value.len();
                    bare.to_vec()
                } else {
                    value.into_owned()
                };
                fields.push((name.into_owned(), value));
            })
            .map_err(|e| malformed(&format!("header block: {e}")))?;
        if !self.rewriting {
            let first = std::mem::take(&mut self.first_frames);
            if !schemed {
                out.extend_from_slice(&first);
                return Ok(Next::PassRest);
            }
            self.rewriting = true;
        }
        self.write(block, &fields, out);
        Ok(Next::Frames)
    }

    /// Writes `fields` encoded for h2 as `block`'s HEADERS (and CONTINUATION)
    /// frames.
    fn write(&mut self, block: Block, fields: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
        let encoded = self.encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut rest = &encoded[..];
        let mut first = true;
        loop {
            let priority = block.priority.filter(|_| first);
            let room = MAX_FRAME - priority.map_or(0, |p| p.len());
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            let mut flags = if tail.is_empty() { END_HEADERS } else { 0 };
            if first && block.end_stream {
                flags |= END_STREAM;
            }
            if priority.is_some() {
                flags |= PRIORITY;
            }
            let len = chunk.len() + priority.map_or(0, |p| p.len());
            out.put_slice(&(len as u32).to_be_bytes()[1..]);
            out.put_u8(if first { HEADERS } else { CONTINUATION });
            out.put_u8(flags);
            out.put_slice(&block.stream);
            if let Some(p) = priority {
                out.put_slice(&p);
            }
            out.put_slice(chunk);
            if tail.is_empty() {
                return;
            }
            rest = tail;
            first = false;
        }
    }
}

/// `http://host:port` -> `host:port`; anything else as it is.
fn without_scheme(authority: &[u8]) -> &[u8] {
    match authority.windows(3).position(|w| w == b"://") {
        Some(i) => {
            let rest = &authority[i + 3..];
            let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            &rest[..end]
        }
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// Reads everything `bytes` turns into through a front, in reads of
    /// `piece` bytes from the "socket".
    async fn through_front(bytes: Vec<u8>, piece: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in bytes.chunks(piece) {
                client.write_all(chunk).await.unwrap();
                client.flush().await.unwrap();
            }
        });
        let mut front = Front::new(server);
        let mut got = Vec::new();
        front.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        got
    }

    /// Splits the front's output back into the preface and frames, decoding
    /// header blocks with a fresh decoder (as h2 would).
    fn headers_seen(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        assert!(out.starts_with(PREFACE));
        let mut rest = &out[PREFACE.len()..];
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let mut payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            if kind == HEADERS && flags & PRIORITY != 0 {
                payload = &payload[5..];
            }
            if kind == HEADERS || kind == CONTINUATION {
                assert!(payload.len() <= MAX_FRAME);
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        blocks
    }

    #[tokio::test]
    async fn a_scheme_in_authority_is_dropped_and_the_table_stays_in_step() {
        // Blocks as grpc-go writes them: `:method POST` (static index 3),
        // `:path` as a literal, and `:authority` as a literal added to the
        // table (0x40 | static name 1) the first time and by its table index
        // (0x80 | 62) after that.
        let path = b"/etcdserverpb.Maintenance/Status";
        let block = |authority: &[u8]| -> Vec<u8> {
            let mut b = vec![0x83, 0x04, path.len() as u8];
            b.extend(path);
            b.extend(authority);
            b
        };
        let literal = |first: u8, value: &[u8]| -> Vec<u8> {
            let mut b = vec![first, value.len() as u8];
            b.extend(value);
            b
        };
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let first = block(&literal(0x41, b"http://127.0.0.1:2379"));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &first));
        bytes.extend(frame(0x0, END_STREAM, 1, b"data"));
        let second = block(&[0x80 | 62]);
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        // A padded block split over a CONTINUATION, with a scheme-less
        // authority (literal, not indexed).
        let third = block(&literal(0x01, b"127.0.0.1:2379"));
        let (a, b) = third.split_at(3);
        let mut padded = vec![2u8];
        padded.extend(a);
        padded.extend([0, 0]);
        bytes.extend(frame(HEADERS, PADDED, 5, &padded));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 5, b));
        for piece in [1, 7, 4096] {
            let out = through_front(bytes.clone(), piece).await;
            let blocks = headers_seen(&out);
            assert_eq!(blocks.len(), 3);
            for block in blocks {
                assert_eq!(block[2], (b":authority".to_vec(), b"127.0.0.1:2379".to_vec()));
                assert_eq!(block[1].1, b"/etcdserverpb.Maintenance/Status".to_vec());
            }
            let data = frame(0x0, END_STREAM, 1, b"data");
            assert!(out.windows(data.len()).any(|w| w == data), "other frames pass unchanged");
        }
    }

    #[tokio::test]
    async fn a_large_block_is_written_in_continuations() {
        let mut client = Encoder::new();
        let big = vec![b'x'; 40_000];
        let block = client.encode(vec![(&b":authority"[..], &b"http://h:1"[..]), (&b"x-big"[..], &big[..])]);
        let mut bytes = PREFACE.to_vec();
        for (i, chunk) in block.chunks(MAX_FRAME).enumerate() {
            let last = (i + 1) * MAX_FRAME >= block.len();
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            bytes.extend(frame(kind, if last { END_HEADERS } else { 0 }, 1, chunk));
        }
        let blocks = headers_seen(&through_front(bytes, 5000).await);
        assert_eq!(blocks, vec![vec![(b":authority".to_vec(), b"h:1".to_vec()), (b"x-big".to_vec(), big)]]);
    }

    #[tokio::test]
    async fn a_connection_without_a_scheme_passes_through_byte_for_byte() {
        let mut block = vec![0x83, 0x41, 14];
        block.extend(b"127.0.0.1:2379");
        let (a, b) = block.split_at(4);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[]));
        bytes.extend(frame(HEADERS, PADDED, 1, &[&[1u8][..], a, &[0]].concat()));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        bytes.extend(frame(0x0, END_STREAM, 1, b"data"));
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x83, 0x80 | 62]));
        for piece in [1, 5, 4096] {
            assert_eq!(through_front(bytes.clone(), piece).await, bytes);
        }
    }

    #[tokio::test]
    async fn http1_passes_through_whole() {
        let request = b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(through_front(request.clone(), 3).await, request);
    }

    #[test]
    fn only_the_scheme_goes() {
        assert_eq!(without_scheme(b"http://127.0.0.1:2379"), b"127.0.0.1:2379");
        assert_eq!(without_scheme(b"https://h:1/x"), b"h:1");
        assert_eq!(without_scheme(b"h:1"), b"h:1");
    }
}
