using System.Buffers.Binary;
using System.Text;

namespace Qed.Nbd.Protocol;

/// <summary>A META_CONTEXT option reply: the id the server chose (0 in LIST answers) and the context's name.</summary>
internal readonly record struct NbdMetaContext(uint Id, string Name);

// Option payloads beyond INFO/GO (NBD.md 1.5-1.6): LIST's SERVER replies, the LIST/SET_META_CONTEXT request and its
// META_CONTEXT replies, and error replies with a message. Same conventions as the rest of NbdHandshake.
internal static partial class NbdHandshake
{
    // SERVER reply payload: u32 name length, name, description filling the rest.
    private const int ServerNameLengthSize = 4;

    // META_CONTEXT request: u32 export name length, name, u32 query count, count x (u32 length, query).
    private const int MetaNameLengthSize = 4;
    private const int MetaCountSize = 4;
    private const int MetaQueryLengthSize = 4;

    // META_CONTEXT reply payload: u32 context id, then the name.
    private const int MetaContextIdSize = 4;

    /// <summary>Length of a SERVER reply payload; the description is cut to <see cref="NbdLimits.MaxStringBytes"/>.</summary>
    public static int ServerReplyLength(string name, string? description) =>
        ServerNameLengthSize + Encoding.UTF8.GetByteCount(name) + CappedLength(description);

    public static int WriteServerReply(Span<byte> destination, string name, string? description)
    {
        int nameBytes = Encoding.UTF8.GetBytes(name, destination[ServerNameLengthSize..]);
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)nameBytes);
        int at = ServerNameLengthSize + nameBytes;
        return at + WriteCapped(destination[at..], description);
    }

    /// <summary>Reads a SERVER reply: the export name, and the description (empty when none was sent).</summary>
    public static bool TryReadServerReply(ReadOnlySpan<byte> payload, out string name, out string description, out string? error)
    {
        name = "";
        description = "";
        if (!Wire.Need(payload, ServerNameLengthSize, "server reply", out error))
        {
            return false;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(payload);
        if (nameLength > (uint)(payload.Length - ServerNameLengthSize))
        {
            return Wire.Fail(out error, $"server reply name length {nameLength} exceeds payload length {payload.Length}");
        }
        return TryDecodeString(payload.Slice(ServerNameLengthSize, (int)nameLength), "export name", out name, out error)
            && TryDecodeString(payload[(ServerNameLengthSize + (int)nameLength)..], "export description", out description, out error);
    }

    /// <summary>Size of a LIST/SET_META_CONTEXT request payload.</summary>
    public static int MetaContextRequestLength(string exportName, IReadOnlyList<string> queries)
    {
        int length = MetaNameLengthSize + Encoding.UTF8.GetByteCount(exportName) + MetaCountSize;
        foreach (string query in queries)
        {
            length += MetaQueryLengthSize + Encoding.UTF8.GetByteCount(query);
        }
        return length;
    }

    public static int WriteMetaContextRequest(Span<byte> destination, string exportName, IReadOnlyList<string> queries)
    {
        int nameBytes = Encoding.UTF8.GetBytes(exportName, destination[MetaNameLengthSize..]);
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)nameBytes);
        int at = MetaNameLengthSize + nameBytes;
        BinaryPrimitives.WriteUInt32BigEndian(destination[at..], (uint)queries.Count);
        at += MetaCountSize;
        foreach (string query in queries)
        {
            int queryBytes = Encoding.UTF8.GetBytes(query, destination[(at + MetaQueryLengthSize)..]);
            BinaryPrimitives.WriteUInt32BigEndian(destination[at..], (uint)queryBytes);
            at += MetaQueryLengthSize + queryBytes;
        }
        return at;
    }

    /// <summary>
    /// Parses a LIST/SET_META_CONTEXT payload. Every length is checked against what is left of the payload before
    /// anything is decoded, and the query count against <paramref name="maxQueries"/> (then <paramref name="tooMany"/>
    /// is true: ERR_TOO_BIG) before the list is allocated. Any other false return means ERR_INVALID.
    /// </summary>
    public static bool TryReadMetaContextRequest(
        ReadOnlySpan<byte> payload, int maxQueries, out string exportName, out string[] queries, out bool tooMany, out string? error)
    {
        exportName = "";
        queries = [];
        tooMany = false;
        if (!Wire.Need(payload, MetaNameLengthSize + MetaCountSize, "meta context request", out error))
        {
            return false;
        }
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(payload);
        if ((ulong)nameLength + MetaNameLengthSize + MetaCountSize > (ulong)payload.Length)
        {
            return Wire.Fail(out error, $"meta context request name length {nameLength} exceeds payload length {payload.Length}");
        }
        if (!TryDecodeString(payload.Slice(MetaNameLengthSize, (int)nameLength), "export name", out exportName, out error))
        {
            return false;
        }
        int at = MetaNameLengthSize + (int)nameLength;
        uint count = BinaryPrimitives.ReadUInt32BigEndian(payload[at..]);
        at += MetaCountSize;
        // Each query takes at least its length field: a count the payload cannot hold is a lie, whatever the cap.
        if ((ulong)count * MetaQueryLengthSize > (ulong)(payload.Length - at))
        {
            return Wire.Fail(out error, $"meta context request query count {count} does not fit in payload length {payload.Length}");
        }
        if (count > (uint)maxQueries)
        {
            tooMany = true;
            return Wire.Fail(out error, $"meta context request has {count} queries, more than {maxQueries}");
        }
        var parsed = new string[count];
        for (int i = 0; i < parsed.Length; i++)
        {
            if (!Wire.Need(payload[at..], MetaQueryLengthSize, "meta context query", out error))
            {
                return false;
            }
            uint queryLength = BinaryPrimitives.ReadUInt32BigEndian(payload[at..]);
            at += MetaQueryLengthSize;
            if (queryLength > (uint)(payload.Length - at))
            {
                return Wire.Fail(out error, $"meta context query length {queryLength} exceeds the {payload.Length - at} bytes left");
            }
            if (!TryDecodeString(payload.Slice(at, (int)queryLength), "meta context query", out parsed[i], out error))
            {
                return false;
            }
            at += (int)queryLength;
        }
        if (at != payload.Length)
        {
            return Wire.Fail(out error, $"meta context request has {payload.Length - at} bytes after its last query");
        }
        queries = parsed;
        return true;
    }

    public static int MetaContextReplyLength(string name) => MetaContextIdSize + Encoding.UTF8.GetByteCount(name);

    public static int WriteMetaContextReply(Span<byte> destination, uint id, string name)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, id);
        return MetaContextIdSize + Encoding.UTF8.GetBytes(name, destination[MetaContextIdSize..]);
    }

    public static bool TryReadMetaContextReply(ReadOnlySpan<byte> payload, out NbdMetaContext context, out string? error)
    {
        context = default;
        if (!Wire.Need(payload, MetaContextIdSize, "meta context reply", out error))
        {
            return false;
        }
        uint id = BinaryPrimitives.ReadUInt32BigEndian(payload);
        if (!TryDecodeString(payload[MetaContextIdSize..], "meta context name", out string name, out error))
        {
            return false;
        }
        context = new NbdMetaContext(id, name);
        return true;
    }

    /// <summary>Length of an error reply's message: UTF-8, cut on a character boundary to <see cref="NbdLimits.MaxStringBytes"/>.</summary>
    public static int ErrorMessageLength(string message) => CappedLength(message);

    public static int WriteErrorMessage(Span<byte> destination, string message) => WriteCapped(destination, message);

    private static int CappedLength(string? text) =>
        text is null ? 0 : Wire.Utf8PrefixLength(Wire.Utf8(text), NbdLimits.MaxStringBytes);

    private static int WriteCapped(Span<byte> destination, string? text)
    {
        if (text is null)
        {
            return 0;
        }
        byte[] bytes = Wire.Utf8(text);
        int length = Wire.Utf8PrefixLength(bytes, NbdLimits.MaxStringBytes);
        bytes.AsSpan(0, length).CopyTo(destination);
        return length;
    }
}
