namespace Qed.IO;

/// <summary>A file held in memory: for tests, fuzzing and images built in memory. Thread-safe; grows on writes past its end.</summary>
internal sealed class MemoryFileAccessor : FileAccessor
{
    private readonly object _sync = new();
    private byte[] _data;
    private long _length;

    public MemoryFileAccessor(string path, byte[] contents, bool readOnly = false)
    {
        Path = path;
        _data = contents;
        _length = contents.Length;
        IsReadOnly = readOnly;
    }

    public override string Path { get; }

    public override bool IsReadOnly { get; }

    /// <summary>A copy of the current contents.</summary>
    public byte[] ToArray()
    {
        lock (_sync)
        {
            return _data.AsSpan(0, (int)_length).ToArray();
        }
    }

    public override long GetLength()
    {
        lock (_sync)
        {
            return _length;
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        lock (_sync)
        {
            if (offset >= _length)
            {
                return new(0);
            }
            int n = (int)Math.Min(buffer.Length, _length - offset);
            _data.AsSpan((int)offset, n).CopyTo(buffer.Span);
            return new(n);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (IsReadOnly)
        {
            throw new IOException($"'{Path}' is read-only");
        }
        lock (_sync)
        {
            long end = offset + buffer.Length;
            EnsureCapacityUnsynchronized(end);
            buffer.Span.CopyTo(_data.AsSpan((int)offset));
            _length = Math.Max(_length, end);
        }
        return ValueTask.CompletedTask;
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public override void SetLength(long length)
    {
        lock (_sync)
        {
            EnsureCapacityUnsynchronized(length);
            if (length < _length)
            {
                _data.AsSpan((int)length, (int)(_length - length)).Clear();
            }
            _length = length;
        }
    }

    private void EnsureCapacityUnsynchronized(long length)
    {
        if (length > Array.MaxLength)
        {
            throw new IOException($"'{Path}' cannot grow to {length} bytes in memory");
        }
        if (length > _data.Length)
        {
            Array.Resize(ref _data, (int)Math.Max(length, Math.Min((long)_data.Length * 2, Array.MaxLength)));
        }
    }

    public override void Dispose()
    {
    }
}
