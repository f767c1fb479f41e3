using System.Buffers;

namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// Payload memory of one request (WRITE data received, READ data to send) as pooled segments of at most
/// <see cref="SegmentSize"/> bytes: a 32 MiB request never asks the pool for one 32 MiB array that the pool would then
/// keep, and the segments go out in the reply's gather-write as they are.
/// </summary>
internal sealed class SegmentedBuffer
{
    public const int SegmentSize = 256 * 1024;

    private byte[]?[] _segments = new byte[]?[1];
    private int _count;

    /// <summary>Bytes held.</summary>
    public long Length { get; private set; }

    /// <summary>Rents memory for <paramref name="length"/> bytes (already validated against the payload limit).</summary>
    public void Allocate(long length)
    {
        if (_count != 0)
        {
            throw new InvalidOperationException("the buffer is in use");
        }

        int count = (int)((length + SegmentSize - 1) / SegmentSize);
        if (_segments.Length < count)
        {
            _segments = new byte[]?[count];
        }

        for (long left = length; left > 0; left -= SegmentSize)
        {
            _segments[_count++] = ArrayPool<byte>.Shared.Rent((int)Math.Min(left, SegmentSize));
        }

        Length = length;
    }

    /// <summary>Returns the memory to the pool.</summary>
    public void Release()
    {
        for (int i = 0; i < _count; i++)
        {
            ArrayPool<byte>.Shared.Return(_segments[i]!);
            _segments[i] = null;
        }

        _count = 0;
        Length = 0;
    }

    /// <summary>Number of segments covering <c>[0, Length)</c>.</summary>
    public int SegmentCount => _count;

    /// <summary>Segment <paramref name="index"/>, trimmed to the bytes it holds.</summary>
    public Memory<byte> Segment(int index)
    {
        long start = (long)index * SegmentSize;
        return _segments[index].AsMemory(0, (int)Math.Min(SegmentSize, Length - start));
    }

    /// <summary>Adds the memory of <c>[start, start+length)</c> to <paramref name="destination"/>, one entry per segment touched.</summary>
    public void AddSlices(List<ReadOnlyMemory<byte>> destination, long start, long length)
    {
        while (length > 0)
        {
            int index = (int)(start / SegmentSize);
            int within = (int)(start % SegmentSize);
            int take = (int)Math.Min(length, SegmentSize - within);
            destination.Add(_segments[index].AsMemory(within, take));
            start += take;
            length -= take;
        }
    }

    /// <summary>The memory of <c>[start, start+length)</c> that lies in the segment containing <paramref name="start"/>.</summary>
    public Memory<byte> SliceAt(long start, long length)
    {
        int index = (int)(start / SegmentSize);
        int within = (int)(start % SegmentSize);
        return _segments[index].AsMemory(within, (int)Math.Min(length, SegmentSize - within));
    }
}
