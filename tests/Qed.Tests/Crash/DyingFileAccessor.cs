using Qed.IO;

namespace Qed.Tests.Crash;

/// <summary>
/// One process writing several files that dies at its Nth change: every write, write-zeroes, length change and flush
/// of every file wrapped with it counts, the Nth fails (a write may first be torn: its first half reaches the file) and
/// so does every change after it, as if the process had been killed there. Reads keep working (they change nothing).
/// </summary>
internal sealed class DyingProcess
{
    private readonly int _at;
    private readonly bool _tear;
    private int _changes;

    /// <param name="at">1-based index of the change at which the process dies; 0 never dies (to count the changes).</param>
    /// <param name="tear">Whether a write at which it dies writes its first half first.</param>
    public DyingProcess(int at, bool tear)
    {
        _at = at;
        _tear = tear;
    }

    /// <summary>Changes issued so far (the failing ones included).</summary>
    public int Changes => Volatile.Read(ref _changes);

    /// <summary>The exception of the change at which the process died, once it did.</summary>
    public IOException? Injected { get; private set; }

    /// <summary>What died, for messages.</summary>
    public string? DiedAt { get; private set; }

    /// <summary>Counts one change; returns whether a write should be torn, and throws once the process is dead.</summary>
    public bool Enter(string what, bool isWrite)
    {
        int index = Interlocked.Increment(ref _changes);
        if (Injected is not null)
        {
            throw new IOException($"the process died at {DiedAt}; {what} did not happen", Injected);
        }
        if (index == _at)
        {
            DiedAt = $"change #{index} ({what})";
            Injected = new IOException($"injected death at {DiedAt}");
            return _tear && isWrite;
        }
        return false;
    }

    /// <summary>Throws the death after a torn write wrote its half.</summary>
    public void Die() => throw Injected!;

    /// <summary>Wraps one file of the process.</summary>
    public FileAccessor Wrap(FileAccessor file) => new DyingFileAccessor(file, this);
}

/// <summary>A file of a <see cref="DyingProcess"/>.</summary>
internal sealed class DyingFileAccessor(FileAccessor inner, DyingProcess process) : FileAccessor
{
    public override string Path => inner.Path;

    public override bool IsReadOnly => inner.IsReadOnly;

    public override long GetLength() => inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (process.Enter($"write of {buffer.Length} bytes at 0x{offset:x} in {System.IO.Path.GetFileName(Path)}", isWrite: true))
        {
            await inner.WriteAsync(buffer[..(buffer.Length / 2)], offset, useAsync, cancellationToken).ConfigureAwait(false);
            process.Die();
        }
        else if (process.Injected is not null)
        {
            process.Die();
        }
        await inner.WriteAsync(buffer, offset, useAsync, cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask ZeroRangeAsync(long offset, long length, bool deallocate, bool useAsync, CancellationToken cancellationToken)
    {
        process.Enter($"zeroing of {length} bytes at 0x{offset:x} in {System.IO.Path.GetFileName(Path)}", isWrite: false);
        if (process.Injected is not null)
        {
            process.Die();
        }
        return inner.ZeroRangeAsync(offset, length, deallocate, useAsync, cancellationToken);
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        process.Enter($"flush of {System.IO.Path.GetFileName(Path)}", isWrite: false);
        if (process.Injected is not null)
        {
            process.Die();
        }
        return inner.FlushAsync(useAsync, cancellationToken);
    }

    public override void SetLength(long length)
    {
        process.Enter($"length change to {length} of {System.IO.Path.GetFileName(Path)}", isWrite: false);
        if (process.Injected is not null)
        {
            process.Die();
        }
        inner.SetLength(length);
    }

    public override (bool IsData, long Length) ProbeAllocation(long offset, long length) => inner.ProbeAllocation(offset, length);

    public override bool ReportsHoles => inner.ReportsHoles;

    public override void Dispose() => inner.Dispose();
}
