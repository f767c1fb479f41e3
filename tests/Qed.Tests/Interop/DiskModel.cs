using System.Security.Cryptography;

namespace Qed.Tests.Interop;

/// <summary>What a guest must read from a disk: a size and bytes at any offset.</summary>
internal interface IGuestView
{
    long Size { get; }

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>; the range lies inside <see cref="Size"/>.</summary>
    void Read(Span<byte> destination, long offset);
}

/// <summary>A fixed content, e.g. the bytes of a raw backing file.</summary>
internal sealed class BytesView(byte[] bytes) : IGuestView
{
    public long Size => bytes.Length;

    public void Read(Span<byte> destination, long offset) => bytes.AsSpan((int)offset, destination.Length).CopyTo(destination);
}

/// <summary>
/// A sparse byte-level model of a virtual disk: what a correct implementation (the spec) must read after a
/// sequence of guest operations, over an optional model of the backing chain. Untouched ranges read from
/// the layer below up to its size and as zeros past it, as QED-FORMAT.md §4.2 requires. Works for 16 TiB
/// disks because only touched 64 KiB chunks are stored.
/// </summary>
internal sealed class DiskModel : IGuestView
{
    private const int ChunkBits = 16;
    private const int ChunkSize = 1 << ChunkBits;
    private readonly Dictionary<long, byte[]> _chunks = [];
    private readonly IGuestView? _below;

    public DiskModel(long size, IGuestView? below = null)
    {
        Size = size;
        _below = below;
    }

    public long Size { get; }

    /// <summary>Applies the operations in order.</summary>
    public DiskModel Apply(IEnumerable<GuestOp> ops)
    {
        foreach (var op in ops)
        {
            op.ApplyTo(this);
        }
        return this;
    }

    public void Fill(long offset, long length, byte value)
    {
        if (offset < 0 || length < 0 || offset + length > Size)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"model write [{offset}, +{length}) outside {Size}");
        }
        while (length > 0)
        {
            long index = offset >> ChunkBits;
            int inChunk = (int)(offset & (ChunkSize - 1));
            int n = (int)Math.Min(length, ChunkSize - inChunk);
            Chunk(index).AsSpan(inChunk, n).Fill(value);
            offset += n;
            length -= n;
        }
    }

    /// <summary>Stores arbitrary bytes (for backing-file content).</summary>
    public void Write(ReadOnlySpan<byte> source, long offset)
    {
        while (!source.IsEmpty)
        {
            long index = offset >> ChunkBits;
            int inChunk = (int)(offset & (ChunkSize - 1));
            int n = Math.Min(source.Length, ChunkSize - inChunk);
            source[..n].CopyTo(Chunk(index).AsSpan(inChunk, n));
            offset += n;
            source = source[n..];
        }
    }

    public void Read(Span<byte> destination, long offset)
    {
        while (!destination.IsEmpty)
        {
            long index = offset >> ChunkBits;
            int inChunk = (int)(offset & (ChunkSize - 1));
            int n = Math.Min(destination.Length, ChunkSize - inChunk);
            if (_chunks.TryGetValue(index, out byte[]? chunk))
            {
                chunk.AsSpan(inChunk, n).CopyTo(destination);
            }
            else
            {
                ReadBelow(destination[..n], offset);
            }
            offset += n;
            destination = destination[n..];
        }
    }

    public byte[] Read(long offset, long length)
    {
        byte[] bytes = new byte[length];
        Read(bytes, offset);
        return bytes;
    }

    /// <summary>sha256 of the whole disk (use on small disks only).</summary>
    public string Sha256() => Digest(this, 0, Size);

    /// <summary>sha256 (hex) of a range of any view.</summary>
    public static string Digest(IGuestView view, long offset, long length)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        while (length > 0)
        {
            int n = (int)Math.Min(length, buffer.Length);
            view.Read(buffer.AsSpan(0, n), offset);
            hash.AppendData(buffer, 0, n);
            offset += n;
            length -= n;
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private byte[] Chunk(long index)
    {
        if (!_chunks.TryGetValue(index, out byte[]? chunk))
        {
            chunk = new byte[ChunkSize];
            long start = index << ChunkBits;
            int valid = (int)Math.Min(ChunkSize, Size - start);
            ReadBelow(chunk.AsSpan(0, valid), start);
            _chunks[index] = chunk;
        }
        return chunk;
    }

    private void ReadBelow(Span<byte> destination, long offset)
    {
        destination.Clear();
        if (_below is null || offset >= _below.Size)
        {
            return;
        }
        int available = (int)Math.Min(destination.Length, _below.Size - offset);
        _below.Read(destination[..available], offset);
    }
}
