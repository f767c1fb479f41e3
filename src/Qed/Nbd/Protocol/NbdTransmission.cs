using System.Buffers.Binary;
using System.Text;

namespace Qed.Nbd.Protocol;

/// <summary>A compact (28-byte) request header.</summary>
internal readonly record struct NbdRequest(ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length);

/// <summary>A simple reply header (16 bytes); READ data follows it only on success.</summary>
internal readonly record struct NbdSimpleReply(uint Error, ulong Cookie);

/// <summary>A structured reply chunk header (20 bytes).</summary>
internal readonly record struct NbdChunkHeader(ushort Flags, ushort Type, ulong Cookie, uint Length);

/// <summary>One base:allocation (or other context) extent: a length and its state flags.</summary>
internal readonly record struct NbdExtent(uint Length, uint Flags);

/// <summary>
/// Readers and writers for the transmission phase (NBD.md 2.1-2.3), with the same conventions as
/// <see cref="NbdHandshake"/>: writers fill from offset 0 and return the byte count, readers return false with a
/// message naming the field and value. Chunk payload writers write only the fixed part where data follows
/// (OFFSET_DATA), so the server can gather-write header, prefix and data in one call (NBD.md 8.4).
/// </summary>
internal static class NbdTransmission
{
    // Request: u32 magic, u16 flags, u16 type, u64 cookie, u64 offset, u32 length.
    public const int RequestSize = 28;
    private const int RequestMagicOffset = 0;
    private const int RequestFlagsOffset = 4;
    private const int RequestTypeOffset = 6;
    private const int RequestCookieOffset = 8;
    private const int RequestOffsetOffset = 16;
    private const int RequestLengthOffset = 24;

    // Simple reply: u32 magic, u32 error, u64 cookie.
    public const int SimpleReplySize = 16;
    private const int SimpleMagicOffset = 0;
    private const int SimpleErrorOffset = 4;
    private const int SimpleCookieOffset = 8;

    // Chunk header: u32 magic, u16 flags, u16 type, u64 cookie, u32 payload length.
    public const int ChunkHeaderSize = 20;
    private const int ChunkMagicOffset = 0;
    private const int ChunkFlagsOffset = 4;
    private const int ChunkTypeOffset = 6;
    private const int ChunkCookieOffset = 8;
    private const int ChunkLengthOffset = 16;

    // Chunk payloads.
    public const int OffsetDataPrefixSize = 8; // u64 offset, data follows
    public const int OffsetHoleSize = 12;      // u64 offset, u32 hole size
    private const int HoleSizeOffset = 8;
    private const int BlockStatusContextSize = 4; // u32 context id, then extents
    private const int ExtentSize = 8;             // u32 length, u32 flags
    private const int ExtentFlagsOffset = 4;
    private const int ErrorFixedSize = 6;         // u32 error, u16 message length, message
    private const int ErrorMessageLengthOffset = 4;
    private const int ErrorOffsetSize = 8;        // ERROR_OFFSET: u64 offset after the message

    public static int WriteRequest(Span<byte> destination, in NbdRequest request)
    {
        destination = destination[..RequestSize];
        BinaryPrimitives.WriteUInt32BigEndian(destination[RequestMagicOffset..], NbdMagic.Request);
        BinaryPrimitives.WriteUInt16BigEndian(destination[RequestFlagsOffset..], request.Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[RequestTypeOffset..], request.Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[RequestCookieOffset..], request.Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[RequestOffsetOffset..], request.Offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[RequestLengthOffset..], request.Length);
        return RequestSize;
    }

    /// <summary>
    /// Reads a request header and validates only the magic (a wrong one means the stream is lost: drop). Command,
    /// flags, range and the WRITE payload cap are the server's checks, in the order of NBD.md 6.3.
    /// </summary>
    public static bool TryReadRequest(ReadOnlySpan<byte> source, out NbdRequest request, out string? error)
    {
        request = default;
        if (!Wire.Need(source, RequestSize, "request header", out error))
        {
            return false;
        }
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(source[RequestMagicOffset..]);
        if (magic != NbdMagic.Request)
        {
            return Wire.Fail(out error, $"request magic 0x{magic:x8} is not 0x{NbdMagic.Request:x8}");
        }
        request = new NbdRequest(
            BinaryPrimitives.ReadUInt16BigEndian(source[RequestFlagsOffset..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[RequestTypeOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[RequestCookieOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[RequestOffsetOffset..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[RequestLengthOffset..]));
        return true;
    }

    public static int WriteSimpleReply(Span<byte> destination, uint error, ulong cookie)
    {
        destination = destination[..SimpleReplySize];
        BinaryPrimitives.WriteUInt32BigEndian(destination[SimpleMagicOffset..], NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[SimpleErrorOffset..], error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[SimpleCookieOffset..], cookie);
        return SimpleReplySize;
    }

    public static bool TryReadSimpleReply(ReadOnlySpan<byte> source, out NbdSimpleReply reply, out string? error)
    {
        reply = default;
        if (!Wire.Need(source, SimpleReplySize, "simple reply", out error))
        {
            return false;
        }
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(source[SimpleMagicOffset..]);
        if (magic != NbdMagic.SimpleReply)
        {
            return Wire.Fail(out error, $"simple reply magic 0x{magic:x8} is not 0x{NbdMagic.SimpleReply:x8}");
        }
        reply = new NbdSimpleReply(
            BinaryPrimitives.ReadUInt32BigEndian(source[SimpleErrorOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[SimpleCookieOffset..]));
        return true;
    }

    public static int WriteChunkHeader(Span<byte> destination, in NbdChunkHeader header)
    {
        destination = destination[..ChunkHeaderSize];
        BinaryPrimitives.WriteUInt32BigEndian(destination[ChunkMagicOffset..], NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ChunkFlagsOffset..], header.Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ChunkTypeOffset..], header.Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[ChunkCookieOffset..], header.Cookie);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ChunkLengthOffset..], header.Length);
        return ChunkHeaderSize;
    }

    /// <summary>Reads a chunk header; the payload length is checked against <paramref name="maxLength"/> before anyone buffers it.</summary>
    public static bool TryReadChunkHeader(ReadOnlySpan<byte> source, uint maxLength, out NbdChunkHeader header, out string? error)
    {
        header = default;
        if (!Wire.Need(source, ChunkHeaderSize, "chunk header", out error))
        {
            return false;
        }
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(source[ChunkMagicOffset..]);
        if (magic != NbdMagic.StructuredReply)
        {
            return Wire.Fail(out error, $"chunk magic 0x{magic:x8} is not 0x{NbdMagic.StructuredReply:x8}");
        }
        uint length = BinaryPrimitives.ReadUInt32BigEndian(source[ChunkLengthOffset..]);
        if (length > maxLength)
        {
            return Wire.Fail(out error, $"chunk length {length} exceeds the limit {maxLength}");
        }
        header = new NbdChunkHeader(
            BinaryPrimitives.ReadUInt16BigEndian(source[ChunkFlagsOffset..]),
            BinaryPrimitives.ReadUInt16BigEndian(source[ChunkTypeOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[ChunkCookieOffset..]),
            length);
        return true;
    }

    /// <summary>The fixed part of an OFFSET_DATA payload; the chunk length is this plus the data length.</summary>
    public static int WriteOffsetDataPrefix(Span<byte> destination, ulong offset)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination[..OffsetDataPrefixSize], offset);
        return OffsetDataPrefixSize;
    }

    public static int WriteOffsetHole(Span<byte> destination, ulong offset, uint holeSize)
    {
        destination = destination[..OffsetHoleSize];
        BinaryPrimitives.WriteUInt64BigEndian(destination, offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[HoleSizeOffset..], holeSize);
        return OffsetHoleSize;
    }

    /// <summary>OFFSET_HOLE payloads are exactly 12 bytes with a non-zero size (NBD.md 2.3).</summary>
    public static bool TryReadOffsetHole(ReadOnlySpan<byte> payload, out ulong offset, out uint holeSize, out string? error)
    {
        offset = 0;
        holeSize = 0;
        if (payload.Length != OffsetHoleSize)
        {
            return Wire.Fail(out error, $"offset hole length {payload.Length} is not {OffsetHoleSize}");
        }
        offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
        holeSize = BinaryPrimitives.ReadUInt32BigEndian(payload[HoleSizeOffset..]);
        error = null;
        return holeSize != 0 || Wire.Fail(out error, "offset hole size 0");
    }

    /// <summary>The magic of a reply (the first four bytes of a simple reply or a chunk header), to tell which header follows.</summary>
    public static uint ReplyMagic(ReadOnlySpan<byte> source) => BinaryPrimitives.ReadUInt32BigEndian(source[..4]);

    /// <summary>Reads the fixed part of an OFFSET_DATA payload: the u64 offset (the data follows it, at least one byte).</summary>
    public static bool TryReadOffsetDataPrefix(ReadOnlySpan<byte> prefix, uint chunkLength, out ulong offset, out string? error)
    {
        offset = 0;
        if (chunkLength <= OffsetDataPrefixSize)
        {
            return Wire.Fail(out error, $"offset data length {chunkLength} leaves no data after the {OffsetDataPrefixSize}-byte offset");
        }
        if (!Wire.Need(prefix, OffsetDataPrefixSize, "offset data", out error))
        {
            return false;
        }
        offset = BinaryPrimitives.ReadUInt64BigEndian(prefix);
        return true;
    }

    public static int BlockStatusLength(int extentCount) => BlockStatusContextSize + (ExtentSize * extentCount);

    public static int WriteBlockStatus(Span<byte> destination, uint contextId, ReadOnlySpan<NbdExtent> extents)
    {
        if (extents.IsEmpty)
        {
            throw new ArgumentException("A BLOCK_STATUS chunk needs at least one extent.", nameof(extents));
        }
        destination = destination[..BlockStatusLength(extents.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(destination, contextId);
        int at = BlockStatusContextSize;
        foreach (NbdExtent extent in extents)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[at..], extent.Length);
            BinaryPrimitives.WriteUInt32BigEndian(destination[(at + ExtentFlagsOffset)..], extent.Flags);
            at += ExtentSize;
        }
        return at;
    }

    /// <summary>Reads a BLOCK_STATUS payload: length must be 4 + 8n with n at least 1, every extent length non-zero.</summary>
    public static bool TryReadBlockStatus(ReadOnlySpan<byte> payload, out uint contextId, out NbdExtent[] extents, out string? error)
    {
        contextId = 0;
        extents = [];
        int body = payload.Length - BlockStatusContextSize;
        if (body < ExtentSize || body % ExtentSize != 0)
        {
            return Wire.Fail(out error, $"block status length {payload.Length} is not 4 + 8n with n >= 1");
        }
        contextId = BinaryPrimitives.ReadUInt32BigEndian(payload);
        var result = new NbdExtent[body / ExtentSize];
        for (int i = 0; i < result.Length; i++)
        {
            int at = BlockStatusContextSize + (ExtentSize * i);
            result[i] = new NbdExtent(
                BinaryPrimitives.ReadUInt32BigEndian(payload[at..]),
                BinaryPrimitives.ReadUInt32BigEndian(payload[(at + ExtentFlagsOffset)..]));
            if (result[i].Length == 0)
            {
                return Wire.Fail(out error, $"block status extent {i} has length 0");
            }
        }
        extents = result;
        error = null;
        return true;
    }

    /// <summary>Length of an ERROR payload; the message is cut to <see cref="NbdLimits.MaxErrorMessageBytes"/>.</summary>
    public static int ErrorLength(string message) => ErrorFixedSize + Wire.Utf8PrefixLength(Wire.Utf8(message), NbdLimits.MaxErrorMessageBytes);

    /// <summary>
    /// Writes an ERROR payload (u32 error, u16 message length, message). Long messages are cut at a byte limit:
    /// qemu's client refuses non-data chunks over 1000 bytes (NBD.md 2.3), on a character boundary. Size the destination with
    /// <see cref="ErrorLength"/>.
    /// </summary>
    public static int WriteError(Span<byte> destination, uint error, string message)
    {
        if (error == NbdError.None)
        {
            throw new ArgumentOutOfRangeException(nameof(error), "An error chunk must carry a non-zero error.");
        }
        byte[] text = Wire.Utf8(message);
        int length = Wire.Utf8PrefixLength(text, NbdLimits.MaxErrorMessageBytes);
        destination = destination[..(ErrorFixedSize + length)];
        BinaryPrimitives.WriteUInt32BigEndian(destination, error);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ErrorMessageLengthOffset..], (ushort)length);
        text.AsSpan(0, length).CopyTo(destination[ErrorFixedSize..]);
        return ErrorFixedSize + length;
    }

    /// <summary>Reads an ERROR_OFFSET payload: an ERROR payload whose message is followed by exactly a u64 offset.</summary>
    public static bool TryReadErrorOffset(ReadOnlySpan<byte> payload, out uint errorValue, out string message, out ulong offset, out string? error)
    {
        offset = 0;
        if (!TryReadError(payload, out errorValue, out message, out error))
        {
            return false;
        }
        int messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload[ErrorMessageLengthOffset..]);
        if (payload.Length != ErrorFixedSize + messageLength + ErrorOffsetSize)
        {
            return Wire.Fail(out error, $"error offset chunk length {payload.Length} is not {ErrorFixedSize + messageLength + ErrorOffsetSize} for a {messageLength}-byte message");
        }
        offset = BinaryPrimitives.ReadUInt64BigEndian(payload[(ErrorFixedSize + messageLength)..]);
        return true;
    }

    /// <summary>Reads an ERROR payload; the message length must fit the payload and the error must be non-zero.</summary>
    public static bool TryReadError(ReadOnlySpan<byte> payload, out uint errorValue, out string message, out string? error)
    {
        errorValue = 0;
        message = "";
        if (!Wire.Need(payload, ErrorFixedSize, "error chunk", out error))
        {
            return false;
        }
        errorValue = BinaryPrimitives.ReadUInt32BigEndian(payload);
        ushort length = BinaryPrimitives.ReadUInt16BigEndian(payload[ErrorMessageLengthOffset..]);
        if (errorValue == NbdError.None)
        {
            return Wire.Fail(out error, "error chunk error value 0");
        }
        if (ErrorFixedSize + length > payload.Length)
        {
            return Wire.Fail(out error, $"error chunk message length {length} exceeds payload length {payload.Length}");
        }
        // Lenient on the text: a bad message must not hide the error value it came with.
        message = Encoding.UTF8.GetString(payload.Slice(ErrorFixedSize, length));
        return true;
    }
}
