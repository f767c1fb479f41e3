using System.Buffers;
using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// One request from its header to its reply written: the header, its payload memory, and the reply as a list of buffers
/// that leave as one unit. Pooled per connection so a steady stream of requests allocates nothing.
/// </summary>
internal sealed class TransmissionRequest : IThreadPoolWorkItem
{
    private const int SmallScratchSize = 64;

    private readonly byte[] _smallScratch = new byte[SmallScratchSize];
    private byte[] _scratch;
    private byte[]? _rentedScratch;
    private int _scratchUsed;

    public TransmissionRequest(TransmissionConnection connection)
    {
        Connection = connection;
        _scratch = _smallScratch;
    }

    public TransmissionConnection Connection { get; }

    public NbdRequest Header { get; set; }

    /// <summary>Bytes counted against the connection's buffered-bytes limit while the request lives.</summary>
    public long HeldBytes { get; set; }

    /// <summary>WRITE data received, or READ data to send.</summary>
    public SegmentedBuffer Data { get; } = new();

    /// <summary>READ data to send from the image file after <see cref="Reply"/> (<see cref="FileRangeSender"/>): its descriptor, or -1.</summary>
    public int FileDescriptor { get; set; } = -1;

    public long FileOffset { get; set; }

    public long FileLength { get; set; }

    /// <summary>The first extent <see cref="Runs"/> came from: when it covers the whole READ, the data can go out straight from the file.</summary>
    public Qed.Extents.Extent FirstExtent { get; set; }

    /// <summary>The reply: headers from the scratch memory and payload slices, written in order as one unit.</summary>
    public List<ReadOnlyMemory<byte>> Reply { get; } = new(4);

    /// <summary>Ranges of a structured READ reply: data to read, or holes to report (reused between requests).</summary>
    public List<ReadRun> Runs { get; } = [];

    /// <summary>Extents of a BLOCK_STATUS reply, one list per context (reused between requests).</summary>
    public List<NbdExtent> BaseExtents { get; } = [];

    public List<NbdExtent> DepthExtents { get; } = [];

    /// <summary>Makes room for <paramref name="bytes"/> of reply headers, taken in order with <see cref="Take"/>.</summary>
    public void ReserveScratch(int bytes)
    {
        ReturnScratch();
        if (bytes > SmallScratchSize)
        {
            _rentedScratch = ArrayPool<byte>.Shared.Rent(bytes);
            _scratch = _rentedScratch;
        }
    }

    /// <summary>The next <paramref name="bytes"/> of the reserved scratch memory.</summary>
    public Memory<byte> Take(int bytes)
    {
        var memory = _scratch.AsMemory(_scratchUsed, bytes);
        _scratchUsed += bytes;
        return memory;
    }

    /// <summary>Adds a buffer to the reply, joining it to the previous one when they are adjacent in the same array (fewer iovecs).</summary>
    public void AddReply(ReadOnlyMemory<byte> buffer)
    {
        if (Reply.Count > 0 && buffer.Length > 0)
        {
            var last = Reply[^1];
            if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray(last, out var a)
                && System.Runtime.InteropServices.MemoryMarshal.TryGetArray(buffer, out var b)
                && ReferenceEquals(a.Array, b.Array) && a.Offset + a.Count == b.Offset)
            {
                Reply[^1] = a.Array.AsMemory(a.Offset, a.Count + b.Count);
                return;
            }
        }

        Reply.Add(buffer);
    }

    /// <summary>Drops a reply being built (an error after part of it was made): its data and headers.</summary>
    public void ClearReply()
    {
        Reply.Clear();
        FileDescriptor = -1;
        Data.Release();
        ReturnScratch();
    }

    /// <summary>Returns every pooled buffer; the request can be reused.</summary>
    public void Reset()
    {
        ClearReply();
        Runs.Clear();
        BaseExtents.Clear();
        DepthExtents.Clear();
        HeldBytes = 0;
        Header = default;
        FirstExtent = default;
    }

    void IThreadPoolWorkItem.Execute() => Connection.ExecuteDispatched(this);

    private void ReturnScratch()
    {
        if (_rentedScratch is not null)
        {
            ArrayPool<byte>.Shared.Return(_rentedScratch);
            _rentedScratch = null;
        }

        _scratch = _smallScratch;
        _scratchUsed = 0;
    }
}

/// <summary>A range of a READ: <see cref="IsData"/> to read and send, otherwise a hole that reads as zeros.</summary>
internal readonly record struct ReadRun(long Offset, long Length, bool IsData);
