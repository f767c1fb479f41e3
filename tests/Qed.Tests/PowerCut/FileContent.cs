namespace Qed.Tests.PowerCut;

/// <summary>The bytes of a file with a length; everything past the length reads as zeros (a hole), as after an extension.</summary>
internal sealed class FileContent
{
    private byte[] _data;

    public FileContent(ReadOnlySpan<byte> initial)
    {
        _data = initial.ToArray();
        Length = initial.Length;
    }

    private FileContent(byte[] data, long length)
    {
        _data = data;
        Length = length;
    }

    public long Length { get; private set; }

    public FileContent Clone() => new(_data.AsSpan(0, (int)Length).ToArray(), Length);

    /// <summary>Makes this file a copy of <paramref name="source"/>, reusing this one's buffer.</summary>
    public void CopyFrom(FileContent source)
    {
        long old = Length;
        EnsureCapacity(source.Length);
        source.Span.CopyTo(_data);
        if (old > source.Length)
        {
            _data.AsSpan((int)source.Length, (int)(old - source.Length)).Clear();
        }
        Length = source.Length;
    }

    public byte[] ToArray() => _data.AsSpan(0, (int)Length).ToArray();

    /// <summary>The bytes up to the length.</summary>
    public ReadOnlySpan<byte> Span => _data.AsSpan(0, (int)Length);

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/>, extending the file (with zeros in any gap).</summary>
    public void Write(long offset, ReadOnlySpan<byte> bytes)
    {
        EnsureCapacity(offset + bytes.Length);
        bytes.CopyTo(_data.AsSpan((int)offset));
        Length = Math.Max(Length, offset + bytes.Length);
    }

    /// <summary>Sets the length: a shorter file loses its tail, a longer one reads zeros in the new part.</summary>
    public void SetLength(long length)
    {
        EnsureCapacity(length);
        if (length < Length)
        {
            _data.AsSpan((int)length, (int)(Length - length)).Clear();
        }
        Length = length;
    }

    /// <summary>Zeroes every byte from <paramref name="offset"/> to the end without changing the length.</summary>
    public void ZeroFrom(long offset)
    {
        if (offset < Length)
        {
            _data.AsSpan((int)offset, (int)(Length - offset)).Clear();
        }
    }

    /// <summary>Applies one logged operation exactly as the file system did while the session ran.</summary>
    public void Apply(FileOp op)
    {
        switch (op.Kind)
        {
            case FileOpKind.Write:
                Write(op.Offset, op.Data);
                break;
            case FileOpKind.SetLength:
                SetLength(op.Length);
                break;
        }
    }

    private void EnsureCapacity(long length)
    {
        if (length > _data.Length)
        {
            Array.Resize(ref _data, (int)Math.Max(length, Math.Min(2L * _data.Length, Array.MaxLength)));
        }
    }
}
