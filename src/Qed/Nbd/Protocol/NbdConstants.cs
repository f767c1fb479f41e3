namespace Qed.Nbd.Protocol;

// Wire constants of the NBD protocol, named as in ../shared/NBD.md (sections 1-2 and the appendix). Plain
// constants rather than enums: values come off the wire unchecked, and a raw integer that is not one of ours must
// still be representable (and echoed, or refused) without a cast that hides it.

/// <summary>Magic numbers (NBD.md appendix).</summary>
internal static class NbdMagic
{
    public const ulong NbdMagicValue = 0x4e42444d41474943; // "NBDMAGIC", first 8 bytes of the greeting
    public const ulong IHaveOpt = 0x49484156454F5054;      // "IHAVEOPT", greeting and every option request
    public const ulong OptionReply = 0x0003e889045565a9;
    public const uint Request = 0x25609513;
    public const uint SimpleReply = 0x67446698;
    public const uint StructuredReply = 0x668e33ef;
}

/// <summary>Handshake flags (server, u16) and client flags (u32), NBD.md 1.3.</summary>
internal static class NbdHandshakeFlags
{
    public const ushort FixedNewstyle = 1 << 0;
    public const ushort NoZeroes = 1 << 1;
    public const uint ClientFixedNewstyle = 1 << 0;
    public const uint ClientNoZeroes = 1 << 1;
}

/// <summary>Option codes, NBD.md 1.5.</summary>
internal static class NbdOption
{
    public const uint ExportName = 1;
    public const uint Abort = 2;
    public const uint List = 3;
    public const uint PeekExport = 4; // withdrawn: answer ERR_UNSUP
    public const uint StartTls = 5;
    public const uint Info = 6;
    public const uint Go = 7;
    public const uint StructuredReply = 8;
    public const uint ListMetaContext = 9;
    public const uint SetMetaContext = 10;
    public const uint ExtendedHeaders = 11;
}

/// <summary>Option reply types, NBD.md 1.6. Errors have bit 31 set.</summary>
internal static class NbdOptionReply
{
    public const uint Ack = 1;
    public const uint Server = 2;
    public const uint Info = 3;
    public const uint MetaContext = 4;
    public const uint ErrorBit = 1u << 31;
    public const uint ErrUnsup = ErrorBit + 1;
    public const uint ErrPolicy = ErrorBit + 2;
    public const uint ErrInvalid = ErrorBit + 3;
    public const uint ErrPlatform = ErrorBit + 4;
    public const uint ErrTlsReqd = ErrorBit + 5;
    public const uint ErrUnknown = ErrorBit + 6;
    public const uint ErrShutdown = ErrorBit + 7;
    public const uint ErrBlockSizeReqd = ErrorBit + 8;
    public const uint ErrTooBig = ErrorBit + 9;
    public const uint ErrExtHeaderReqd = ErrorBit + 10;

    public static bool IsError(uint replyType) => (replyType & ErrorBit) != 0;
}

/// <summary>NBD_INFO_* item types inside INFO replies, NBD.md 1.7.</summary>
internal static class NbdInfo
{
    public const ushort Export = 0;
    public const ushort Name = 1;
    public const ushort Description = 2;
    public const ushort BlockSize = 3;
}

/// <summary>Transmission flags (u16), NBD.md 2.5.</summary>
internal static class NbdTransmissionFlags
{
    public const ushort HasFlags = 1 << 0;
    public const ushort ReadOnly = 1 << 1;
    public const ushort SendFlush = 1 << 2;
    public const ushort SendFua = 1 << 3;
    public const ushort Rotational = 1 << 4;
    public const ushort SendTrim = 1 << 5;
    public const ushort SendWriteZeroes = 1 << 6;
    public const ushort SendDf = 1 << 7;
    public const ushort CanMultiConn = 1 << 8;
    public const ushort SendResize = 1 << 9;
    public const ushort SendCache = 1 << 10;
    public const ushort SendFastZero = 1 << 11;
    public const ushort BlockStatusPayload = 1 << 12;
}

/// <summary>Command types, NBD.md 2.7.</summary>
internal static class NbdCommand
{
    public const ushort Read = 0;
    public const ushort Write = 1;
    public const ushort Disc = 2;
    public const ushort Flush = 3;
    public const ushort Trim = 4;
    public const ushort Cache = 5;
    public const ushort WriteZeroes = 6;
    public const ushort BlockStatus = 7;
    public const ushort Resize = 8;
}

/// <summary>Command flags (u16 in the request), NBD.md 2.6.</summary>
internal static class NbdCommandFlags
{
    public const ushort Fua = 1 << 0;
    public const ushort NoHole = 1 << 1;
    public const ushort Df = 1 << 2;
    public const ushort ReqOne = 1 << 3;
    public const ushort FastZero = 1 << 4;
    public const ushort PayloadLen = 1 << 5;
}

/// <summary>Structured reply chunk flags and types, NBD.md 2.3.</summary>
internal static class NbdChunk
{
    public const ushort FlagDone = 1 << 0;
    public const ushort TypeNone = 0;
    public const ushort TypeOffsetData = 1;
    public const ushort TypeOffsetHole = 2;
    public const ushort TypeBlockStatus = 5;
    public const ushort TypeBlockStatusExt = 6;
    public const ushort TypeError = 0x8001;
    public const ushort TypeErrorOffset = 0x8002;
    public const ushort ErrorTypeBit = 0x8000; // unknown types with this bit only fail the request

    /// <summary>base:allocation extent flags, NBD.md 4.1.</summary>
    public const uint StateHole = 1;
    public const uint StateZero = 2;
}

/// <summary>Error values carried in replies, NBD.md 2.8 (Linux errno numbering, fixed by the protocol).</summary>
internal static class NbdError
{
    public const uint None = 0;
    public const uint Perm = 1;
    public const uint Io = 5;
    public const uint NoMem = 12;
    public const uint Inval = 22;
    public const uint NoSpc = 28;
    public const uint Overflow = 75;
    public const uint NotSup = 95;
    public const uint Shutdown = 108;
}

/// <summary>Protocol limits we enforce on input (NBD.md 1.1, 1.9, 2.3, 6.3).</summary>
internal static class NbdLimits
{
    public const int MaxStringBytes = 4096;          // names, descriptions, messages: "must be <= 4096 bytes"
    public const uint DefaultMaxOptionLength = 64 * 1024; // "anything >= 64 KiB is plenty for us" (1.9)
    public const int MaxErrorMessageBytes = 900;     // qemu's client refuses non-data chunks over 1000 bytes
}
