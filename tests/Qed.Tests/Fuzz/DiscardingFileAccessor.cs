using Qed.IO;

namespace Qed.Tests.Fuzz;

/// <summary>
/// A target file that keeps its length but not its bytes: the fuzz harness's convert writes every extent into it (each
/// write checked to lie inside the file) without paying for a disk-sized buffer per mutant. Reads return zeros.
/// </summary>
internal sealed class DiscardingFileAccessor(string path, long length) : FileAccessor
{
    private long _length = length;

    /// <summary>Bytes written so far.</summary>
    public long Written { get; private set; }

    public override string Path { get; } = path;

    public override bool IsReadOnly => false;

    public override long GetLength() => Volatile.Read(ref _length);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int n = (int)Math.Clamp(GetLength() - offset, 0, buffer.Length);
        buffer.Span[..n].Clear();
        return new(n);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (offset < 0 || offset > GetLength() - buffer.Length)
        {
            throw new InvalidOperationException($"a write of {buffer.Length} bytes at {offset} lies outside the {GetLength()}-byte target");
        }
        Written += buffer.Length;
        return ValueTask.CompletedTask;
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public override void SetLength(long length) => Volatile.Write(ref _length, length);

    public override void Dispose()
    {
    }
}
