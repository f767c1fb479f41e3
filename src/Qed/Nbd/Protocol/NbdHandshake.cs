using System.Buffers.Binary;
using System.Text;

namespace Qed.Nbd.Protocol;

/// <summary>An option request header: the option code and the length of the payload that follows.</summary>
internal readonly record struct NbdOptionHeader(uint Option, uint Length);

/// <summary>An option reply header: the echoed option, the reply type and the payload length.</summary>
internal readonly record struct NbdOptionReplyHeader(uint Option, uint ReplyType, uint Length);

/// <summary>The u32/u16 content of an NBD_INFO_BLOCK_SIZE item.</summary>
internal readonly record struct NbdBlockSize(uint Minimum, uint Preferred, uint Maximum);

/// <summary>
/// Readers and writers for the fixed-newstyle handshake (NBD.md 1.3-1.7). Writers take a destination span, fill it
/// from offset 0 and return the byte count; a destination too small is a programming error and throws. Readers
/// never throw on bad input: they return false with a message naming the field and the value seen, so the caller
/// can drop the connection (or answer ERR_INVALID) without unwinding an exception per hostile byte.
/// </summary>
internal static partial class NbdHandshake
{
    // Greeting: NBDMAGIC, IHAVEOPT, u16 handshake flags.
    public const int GreetingSize = 18;
    public const ushort GreetingFlags = NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes; // what we offer (both peers do)
    private const int GreetingMagicOffset = 0;
    private const int GreetingOptMagicOffset = 8;
    private const int GreetingFlagsOffset = 16;

    public const int ClientFlagsSize = 4;

    // Option request header: IHAVEOPT, u32 option, u32 length.
    public const int OptionHeaderSize = 16;
    private const int OptionMagicOffset = 0;
    private const int OptionCodeOffset = 8;
    private const int OptionLengthOffset = 12;

    // Option reply header: magic, u32 option, u32 reply type, u32 length.
    public const int OptionReplyHeaderSize = 20;
    private const int ReplyMagicOffset = 0;
    private const int ReplyOptionOffset = 8;
    private const int ReplyTypeOffset = 12;
    private const int ReplyLengthOffset = 16;

    // EXPORT_NAME reply (not an option reply): u64 size, u16 transmission flags, 124 zero bytes unless NO_ZEROES.
    public const int ExportNameReplySize = 10;
    public const int ExportNameReplyPaddedSize = 134;
    private const int ExportNameFlagsOffset = 8;

    // INFO reply payloads: u16 info type, then data. Lengths include the type (NBD.md 1.7).
    private const int InfoTypeSize = 2;
    public const int InfoExportSize = 12;    // type, u64 size, u16 flags
    public const int InfoBlockSizeSize = 14; // type, u32 min, u32 preferred, u32 max
    private const int InfoExportSizeOffset = 2;
    private const int InfoExportFlagsOffset = 10;
    private const int InfoMinimumOffset = 2;
    private const int InfoPreferredOffset = 6;
    private const int InfoMaximumOffset = 10;

    // INFO/GO request payload: u32 name length N, name, u16 count K, K x u16.
    private const int NameLengthSize = 4;
    private const int InfoCountSize = 2;
    private const int InfoRequestSize = 2;

    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static int WriteGreeting(Span<byte> destination, ushort handshakeFlags)
    {
        destination = destination[..GreetingSize];
        BinaryPrimitives.WriteUInt64BigEndian(destination[GreetingMagicOffset..], NbdMagic.NbdMagicValue);
        BinaryPrimitives.WriteUInt64BigEndian(destination[GreetingOptMagicOffset..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(destination[GreetingFlagsOffset..], handshakeFlags);
        return GreetingSize;
    }

    public static bool TryReadGreeting(ReadOnlySpan<byte> source, out ushort handshakeFlags, out string? error)
    {
        handshakeFlags = 0;
        if (!Wire.Need(source, GreetingSize, "greeting", out error))
        {
            return false;
        }
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(source[GreetingMagicOffset..]);
        ulong optMagic = BinaryPrimitives.ReadUInt64BigEndian(source[GreetingOptMagicOffset..]);
        if (magic != NbdMagic.NbdMagicValue)
        {
            return Wire.Fail(out error, $"greeting magic 0x{magic:x16} is not NBDMAGIC");
        }
        if (optMagic != NbdMagic.IHaveOpt)
        {
            // The oldstyle magic lands here too: we do not speak oldstyle (NBD.md 1.2).
            return Wire.Fail(out error, $"greeting second magic 0x{optMagic:x16} is not IHAVEOPT");
        }
        handshakeFlags = BinaryPrimitives.ReadUInt16BigEndian(source[GreetingFlagsOffset..]);
        return true;
    }

    public static int WriteClientFlags(Span<byte> destination, uint clientFlags)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination[..ClientFlagsSize], clientFlags);
        return ClientFlagsSize;
    }

    /// <summary>Reads the client flags and refuses any bit the server did not offer (the server must then drop).</summary>
    public static bool TryReadClientFlags(ReadOnlySpan<byte> source, ushort offeredHandshakeFlags, out uint clientFlags, out string? error)
    {
        clientFlags = 0;
        if (!Wire.Need(source, ClientFlagsSize, "client flags", out error))
        {
            return false;
        }
        clientFlags = BinaryPrimitives.ReadUInt32BigEndian(source);
        // Client bits share positions with the handshake bits (FIXED_NEWSTYLE 0, NO_ZEROES 1).
        uint unknown = clientFlags & ~(uint)offeredHandshakeFlags;
        return unknown == 0 || Wire.Fail(out error, $"client flags 0x{clientFlags:x8} set bits 0x{unknown:x8} that were not offered");
    }

    public static int WriteOptionHeader(Span<byte> destination, uint option, uint length)
    {
        destination = destination[..OptionHeaderSize];
        BinaryPrimitives.WriteUInt64BigEndian(destination[OptionMagicOffset..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(destination[OptionCodeOffset..], option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[OptionLengthOffset..], length);
        return OptionHeaderSize;
    }

    /// <summary>
    /// Reads an option request header and checks the payload length against <paramref name="maxLength"/> here, so
    /// no caller can size a buffer from a hostile length (NBD.md 6.3).
    /// </summary>
    public static bool TryReadOptionHeader(ReadOnlySpan<byte> source, uint maxLength, out NbdOptionHeader header, out string? error)
    {
        header = default;
        if (!Wire.Need(source, OptionHeaderSize, "option header", out error))
        {
            return false;
        }
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(source[OptionMagicOffset..]);
        if (magic != NbdMagic.IHaveOpt)
        {
            return Wire.Fail(out error, $"option magic 0x{magic:x16} is not IHAVEOPT");
        }
        uint option = BinaryPrimitives.ReadUInt32BigEndian(source[OptionCodeOffset..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(source[OptionLengthOffset..]);
        if (length > maxLength)
        {
            return Wire.Fail(out error, $"option {option} length {length} exceeds the limit {maxLength}");
        }
        header = new NbdOptionHeader(option, length);
        return true;
    }

    public static int WriteOptionReplyHeader(Span<byte> destination, uint option, uint replyType, uint length)
    {
        destination = destination[..OptionReplyHeaderSize];
        BinaryPrimitives.WriteUInt64BigEndian(destination[ReplyMagicOffset..], NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ReplyOptionOffset..], option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ReplyTypeOffset..], replyType);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ReplyLengthOffset..], length);
        return OptionReplyHeaderSize;
    }

    /// <summary>Reads an option reply header; the length is checked against <paramref name="maxLength"/> like requests.</summary>
    public static bool TryReadOptionReplyHeader(ReadOnlySpan<byte> source, uint maxLength, out NbdOptionReplyHeader header, out string? error)
    {
        header = default;
        if (!Wire.Need(source, OptionReplyHeaderSize, "option reply header", out error))
        {
            return false;
        }
        ulong magic = BinaryPrimitives.ReadUInt64BigEndian(source[ReplyMagicOffset..]);
        if (magic != NbdMagic.OptionReply)
        {
            return Wire.Fail(out error, $"option reply magic 0x{magic:x16} is not 0x{NbdMagic.OptionReply:x16}");
        }
        uint option = BinaryPrimitives.ReadUInt32BigEndian(source[ReplyOptionOffset..]);
        uint type = BinaryPrimitives.ReadUInt32BigEndian(source[ReplyTypeOffset..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(source[ReplyLengthOffset..]);
        if (length > maxLength)
        {
            return Wire.Fail(out error, $"option reply length {length} exceeds the limit {maxLength}");
        }
        header = new NbdOptionReplyHeader(option, type, length);
        return true;
    }

    /// <summary>
    /// The EXPORT_NAME answer (NBD.md 1.5): transmission starts right after it. The 124-byte pad is written as
    /// zeros unless the client sent C_NO_ZEROES.
    /// </summary>
    public static int WriteExportNameReply(Span<byte> destination, ulong size, ushort transmissionFlags, bool noZeroes)
    {
        int length = noZeroes ? ExportNameReplySize : ExportNameReplyPaddedSize;
        destination = destination[..length];
        BinaryPrimitives.WriteUInt64BigEndian(destination, size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[ExportNameFlagsOffset..], transmissionFlags);
        destination[ExportNameReplySize..].Clear();
        return length;
    }

    /// <summary>Size of an INFO/GO request payload for a name and a number of info requests.</summary>
    public static int InfoRequestLength(string name, int infoCount) =>
        NameLengthSize + Encoding.UTF8.GetByteCount(name) + InfoCountSize + (InfoRequestSize * infoCount);

    public static int WriteInfoRequest(Span<byte> destination, string name, ReadOnlySpan<ushort> infos)
    {
        int nameBytes = Encoding.UTF8.GetBytes(name, destination[NameLengthSize..]);
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)nameBytes);
        int at = NameLengthSize + nameBytes;
        BinaryPrimitives.WriteUInt16BigEndian(destination[at..], (ushort)infos.Length);
        at += InfoCountSize;
        foreach (ushort info in infos)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[at..], info);
            at += InfoRequestSize;
        }
        return at;
    }

    /// <summary>
    /// Parses an INFO/GO payload. Lengths must add up exactly (<c>L == 4 + N + 2 + 2K</c>, as nbdkit checks); the
    /// name must be valid UTF-8 without NUL and at most 4096 bytes. A false return means ERR_INVALID.
    /// </summary>
    public static bool TryReadInfoRequest(ReadOnlySpan<byte> payload, out string name, out ushort[] infos, out string? error)
    {
        name = "";
        infos = [];
        if (!Wire.Need(payload, NameLengthSize + InfoCountSize, "info request", out error))
        {
            return false;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(payload);
        // Checked in 64 bits: a hostile 0xffffffff must not wrap around the sum.
        if ((ulong)nameLength + NameLengthSize + InfoCountSize > (ulong)payload.Length)
        {
            return Wire.Fail(out error, $"info request name length {nameLength} exceeds payload length {payload.Length}");
        }
        int countOffset = NameLengthSize + (int)nameLength;
        ushort count = BinaryPrimitives.ReadUInt16BigEndian(payload[countOffset..]);
        int expected = countOffset + InfoCountSize + (InfoRequestSize * count);
        if (expected != payload.Length)
        {
            return Wire.Fail(out error, $"info request count {count} gives length {expected}, payload has {payload.Length}");
        }
        if (!TryDecodeString(payload.Slice(NameLengthSize, (int)nameLength), "export name", out name, out error))
        {
            return false;
        }
        infos = new ushort[count];
        for (int i = 0; i < count; i++)
        {
            infos[i] = BinaryPrimitives.ReadUInt16BigEndian(payload[(countOffset + InfoCountSize + (InfoRequestSize * i))..]);
        }
        return true;
    }

    public static int WriteInfoExport(Span<byte> destination, ulong size, ushort transmissionFlags)
    {
        destination = destination[..InfoExportSize];
        BinaryPrimitives.WriteUInt16BigEndian(destination, NbdInfo.Export);
        BinaryPrimitives.WriteUInt64BigEndian(destination[InfoExportSizeOffset..], size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[InfoExportFlagsOffset..], transmissionFlags);
        return InfoExportSize;
    }

    public static int WriteInfoBlockSize(Span<byte> destination, NbdBlockSize sizes)
    {
        destination = destination[..InfoBlockSizeSize];
        BinaryPrimitives.WriteUInt16BigEndian(destination, NbdInfo.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(destination[InfoMinimumOffset..], sizes.Minimum);
        BinaryPrimitives.WriteUInt32BigEndian(destination[InfoPreferredOffset..], sizes.Preferred);
        BinaryPrimitives.WriteUInt32BigEndian(destination[InfoMaximumOffset..], sizes.Maximum);
        return InfoBlockSizeSize;
    }

    /// <summary>Writes NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the UTF-8 text (no length field).</summary>
    public static int WriteInfoText(Span<byte> destination, ushort infoType, string text)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, infoType);
        return InfoTypeSize + Encoding.UTF8.GetBytes(text, destination[InfoTypeSize..]);
    }

    public static int InfoTextLength(string text) => InfoTypeSize + Encoding.UTF8.GetByteCount(text);

    /// <summary>The info type of an INFO reply payload (the first two bytes).</summary>
    public static bool TryReadInfoType(ReadOnlySpan<byte> payload, out ushort infoType, out string? error)
    {
        infoType = 0;
        if (!Wire.Need(payload, InfoTypeSize, "info item", out error))
        {
            return false;
        }
        infoType = BinaryPrimitives.ReadUInt16BigEndian(payload);
        return true;
    }

    /// <summary>NBD_INFO_EXPORT must be exactly 12 bytes and carry HAS_FLAGS (libnbd drops the connection otherwise).</summary>
    public static bool TryReadInfoExport(ReadOnlySpan<byte> payload, out ulong size, out ushort transmissionFlags, out string? error)
    {
        size = 0;
        transmissionFlags = 0;
        if (!ExpectInfo(payload, NbdInfo.Export, InfoExportSize, out error))
        {
            return false;
        }
        size = BinaryPrimitives.ReadUInt64BigEndian(payload[InfoExportSizeOffset..]);
        transmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(payload[InfoExportFlagsOffset..]);
        return (transmissionFlags & NbdTransmissionFlags.HasFlags) != 0
            || Wire.Fail(out error, $"info export transmission flags 0x{transmissionFlags:x4} lack HAS_FLAGS");
    }

    public static bool TryReadInfoBlockSize(ReadOnlySpan<byte> payload, out NbdBlockSize sizes, out string? error)
    {
        sizes = default;
        if (!ExpectInfo(payload, NbdInfo.BlockSize, InfoBlockSizeSize, out error))
        {
            return false;
        }
        sizes = new NbdBlockSize(
            BinaryPrimitives.ReadUInt32BigEndian(payload[InfoMinimumOffset..]),
            BinaryPrimitives.ReadUInt32BigEndian(payload[InfoPreferredOffset..]),
            BinaryPrimitives.ReadUInt32BigEndian(payload[InfoMaximumOffset..]));
        return true;
    }

    /// <summary>Reads NBD_INFO_NAME or NBD_INFO_DESCRIPTION (the text fills the rest of the payload).</summary>
    public static bool TryReadInfoText(ReadOnlySpan<byte> payload, ushort infoType, out string text, out string? error)
    {
        text = "";
        if (!TryReadInfoType(payload, out ushort type, out error))
        {
            return false;
        }
        if (type != infoType)
        {
            return Wire.Fail(out error, $"info type {type} is not the expected {infoType}");
        }
        return TryDecodeString(payload[InfoTypeSize..], "info text", out text, out error);
    }

    private static bool ExpectInfo(ReadOnlySpan<byte> payload, ushort infoType, int exactLength, out string? error)
    {
        if (!TryReadInfoType(payload, out ushort type, out error))
        {
            return false;
        }
        if (type != infoType)
        {
            return Wire.Fail(out error, $"info type {type} is not the expected {infoType}");
        }
        return payload.Length == exactLength
            || Wire.Fail(out error, $"info type {type} length {payload.Length} is not {exactLength}");
    }

    /// <summary>Protocol strings: UTF-8, no NUL, at most 4096 bytes (NBD.md 1.1).</summary>
    internal static bool TryDecodeString(ReadOnlySpan<byte> bytes, string field, out string text, out string? error)
    {
        text = "";
        if (bytes.Length > NbdLimits.MaxStringBytes)
        {
            return Wire.Fail(out error, $"{field} length {bytes.Length} exceeds {NbdLimits.MaxStringBytes}");
        }
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0)
        {
            return Wire.Fail(out error, $"{field} contains NUL at byte {nul}");
        }
        try
        {
            text = s_strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return Wire.Fail(out error, $"{field} is not valid UTF-8");
        }
        error = null;
        return true;
    }
}
