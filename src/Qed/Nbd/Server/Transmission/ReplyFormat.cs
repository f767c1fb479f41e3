using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server.Transmission;

/// <summary>Builds replies into a request's scratch memory and reply list, with the writers of <see cref="NbdTransmission"/>.</summary>
internal static class ReplyFormat
{
    public const int DataChunkOverhead = NbdTransmission.ChunkHeaderSize + NbdTransmission.OffsetDataPrefixSize;
    public const int HoleChunkSize = NbdTransmission.ChunkHeaderSize + NbdTransmission.OffsetHoleSize;

    /// <summary>A simple reply (success or error); for a successful non-structured READ the data follows.</summary>
    public static void Simple(TransmissionRequest request, uint error, bool withData)
    {
        request.ReserveScratch(NbdTransmission.SimpleReplySize);
        var header = request.Take(NbdTransmission.SimpleReplySize);
        NbdTransmission.WriteSimpleReply(header.Span, error, request.Header.Cookie);
        request.AddReply(header);
        if (withData)
        {
            request.Data.AddSlices(request.Reply, 0, request.Data.Length);
        }
    }

    /// <summary>An error: an ERROR chunk with a message when structured replies are on, else a simple reply.</summary>
    public static void Error(TransmissionRequest request, bool structured, uint error, string message)
    {
        request.ClearReply();
        if (!structured)
        {
            Simple(request, error, withData: false);
            return;
        }

        int payload = NbdTransmission.ErrorLength(message);
        request.ReserveScratch(NbdTransmission.ChunkHeaderSize + payload);
        var chunk = request.Take(NbdTransmission.ChunkHeaderSize + payload);
        NbdTransmission.WriteChunkHeader(chunk.Span, new NbdChunkHeader(NbdChunk.FlagDone, NbdChunk.TypeError, request.Header.Cookie, (uint)payload));
        NbdTransmission.WriteError(chunk.Span[NbdTransmission.ChunkHeaderSize..], error, message);
        request.AddReply(chunk);
    }

    /// <summary>A NONE chunk with DONE: success with nothing to say (a structured READ of length 0).</summary>
    public static void None(TransmissionRequest request)
    {
        request.ReserveScratch(NbdTransmission.ChunkHeaderSize);
        var chunk = request.Take(NbdTransmission.ChunkHeaderSize);
        NbdTransmission.WriteChunkHeader(chunk.Span, new NbdChunkHeader(NbdChunk.FlagDone, NbdChunk.TypeNone, request.Header.Cookie, 0));
        request.AddReply(chunk);
    }

    /// <summary>An OFFSET_DATA chunk for <paramref name="length"/> bytes at <paramref name="offset"/>, whose data is <paramref name="dataStart"/>.. of the request's buffer.</summary>
    public static void DataChunk(TransmissionRequest request, ulong offset, long dataStart, long length, bool done)
    {
        var header = request.Take(DataChunkOverhead);
        var span = header.Span;
        NbdTransmission.WriteChunkHeader(span, new NbdChunkHeader(done ? NbdChunk.FlagDone : (ushort)0, NbdChunk.TypeOffsetData, request.Header.Cookie,
            (uint)(NbdTransmission.OffsetDataPrefixSize + length)));
        NbdTransmission.WriteOffsetDataPrefix(span[NbdTransmission.ChunkHeaderSize..], offset);
        request.AddReply(header);
        request.Data.AddSlices(request.Reply, dataStart, length);
    }

    /// <summary>The header and offset of an OFFSET_DATA chunk whose data the writer sends from the image file.</summary>
    public static void DataChunkHeader(TransmissionRequest request, ulong offset, long length, bool done)
    {
        var header = request.Take(DataChunkOverhead);
        var span = header.Span;
        NbdTransmission.WriteChunkHeader(span, new NbdChunkHeader(done ? NbdChunk.FlagDone : (ushort)0, NbdChunk.TypeOffsetData, request.Header.Cookie,
            (uint)(NbdTransmission.OffsetDataPrefixSize + length)));
        NbdTransmission.WriteOffsetDataPrefix(span[NbdTransmission.ChunkHeaderSize..], offset);
        request.AddReply(header);
    }

    /// <summary>An OFFSET_HOLE chunk: <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros.</summary>
    public static void HoleChunk(TransmissionRequest request, ulong offset, uint length, bool done)
    {
        var chunk = request.Take(HoleChunkSize);
        var span = chunk.Span;
        NbdTransmission.WriteChunkHeader(span, new NbdChunkHeader(done ? NbdChunk.FlagDone : (ushort)0, NbdChunk.TypeOffsetHole, request.Header.Cookie, NbdTransmission.OffsetHoleSize));
        NbdTransmission.WriteOffsetHole(span[NbdTransmission.ChunkHeaderSize..], offset, length);
        request.AddReply(chunk);
    }

    /// <summary>Bytes one BLOCK_STATUS chunk of <paramref name="extents"/> extents takes, header included.</summary>
    public static int BlockStatusChunkSize(int extents) => NbdTransmission.ChunkHeaderSize + NbdTransmission.BlockStatusLength(extents);

    /// <summary>A BLOCK_STATUS chunk for one context.</summary>
    public static void BlockStatusChunk(TransmissionRequest request, uint contextId, List<NbdExtent> extents, bool done)
    {
        int payload = NbdTransmission.BlockStatusLength(extents.Count);
        var chunk = request.Take(NbdTransmission.ChunkHeaderSize + payload);
        var span = chunk.Span;
        NbdTransmission.WriteChunkHeader(span, new NbdChunkHeader(done ? NbdChunk.FlagDone : (ushort)0, NbdChunk.TypeBlockStatus, request.Header.Cookie, (uint)payload));
        NbdTransmission.WriteBlockStatus(span[NbdTransmission.ChunkHeaderSize..], contextId, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(extents));
        request.AddReply(chunk);
    }
}
