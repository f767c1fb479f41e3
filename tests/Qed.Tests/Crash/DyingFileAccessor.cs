using Qed.IO;

namespace Qed.Tests.Crash;

/// <summary>
/// One process writing several files that dies at its Nth change: every write, write-zeroes, length change and flush
/// of every file wrapped with it counts, the Nth fails (a write may first be torn: its first half reaches the file) and
/// so does every change after it, as if the process had been killed there. Reads keep working (they change nothing).
/// With a power cut, the death also undoes every change of each file since its last flush (the worst a lost page cache
/// can do), so a change that was not ordered behind a flush is caught.
/// </summary>
internal sealed class DyingProcess
{
    private readonly int _at;
    private readonly bool _tear;
    private readonly List<DyingFileAccessor> _files = [];
    private int _changes;

    /// <param name="at">1-based index of the change at which the process dies; 0 never dies (to count the changes).</param>
    /// <param name="tear">Whether a write at which it dies writes its first half first.</param>
    /// <param name="powerCut">Whether the death also loses every change not yet flushed.</param>
    public DyingProcess(int at, bool tear, bool powerCut = false)
    {
        _at = at;
        _tear = tear;
        PowerCut = powerCut;
    }

    /// <summary>Whether the death loses what was not flushed.</summary>
    public bool PowerCut { get; }

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

    /// <summary>Throws the death (after a torn write wrote its half); with a power cut, first undoes what no flush covered.</summary>
    public void Die()
    {
        if (PowerCut)
        {
            lock (_files)
            {
                foreach (var file in _files)
                {
                    file.LoseUnflushed();
                }
            }
        }
        throw Injected!;
    }

    /// <summary>Wraps one file of the process.</summary>
    public FileAccessor Wrap(FileAccessor file)
    {
        var dying = new DyingFileAccessor(file, this);
        lock (_files)
        {
            _files.Add(dying);
        }
        return dying;
    }
}

/// <summary>A file of a <see cref="DyingProcess"/>.</summary>
internal sealed class DyingFileAccessor(FileAccessor inner, DyingProcess process) : FileAccessor
{
    /// <summary>For a power cut: what each change since the last flush overwrote (its range's old bytes and the old file length), oldest first.</summary>
    private readonly List<(long Offset, byte[] Old, long OldLength)> _unflushed = [];

    public override string Path => inner.Path;

    public override bool IsReadOnly => inner.IsReadOnly;

    public override long GetLength() => inner.GetLength();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        bool tear = process.Enter($"write of {buffer.Length} bytes at 0x{offset:x} in {System.IO.Path.GetFileName(Path)}", isWrite: true);
        Remember(offset, buffer.Length);
        if (tear)
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
        Remember(offset, length);
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
        lock (_unflushed)
        {
            _unflushed.Clear();
        }
        return inner.FlushAsync(useAsync, cancellationToken);
    }

    public override void SetLength(long length)
    {
        process.Enter($"length change to {length} of {System.IO.Path.GetFileName(Path)}", isWrite: false);
        long current = inner.GetLength();
        Remember(Math.Min(length, current), Math.Max(0, current - length));
        if (process.Injected is not null)
        {
            process.Die();
        }
        inner.SetLength(length);
    }

    public override (bool IsData, long Length) ProbeAllocation(long offset, long length) => inner.ProbeAllocation(offset, length);

    public override bool ReportsHoles => inner.ReportsHoles;

    public override void Dispose() => inner.Dispose();

    /// <summary>Records, for a power cut, the bytes of the range a change is about to overwrite and the file's length.</summary>
    private void Remember(long offset, long length)
    {
        if (!process.PowerCut)
        {
            return;
        }
        long fileLength = inner.GetLength();
        long end = Math.Min(offset + length, fileLength);
        byte[] old = new byte[Math.Max(0, end - offset)];
        if (old.Length > 0)
        {
            inner.ReadZeroPaddedAsync(old, offset, useAsync: false, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        }
        lock (_unflushed)
        {
            _unflushed.Add((offset, old, fileLength));
        }
    }

    /// <summary>Undoes every change since the last flush, newest first: the file as a power cut may leave it.</summary>
    public void LoseUnflushed()
    {
        lock (_unflushed)
        {
            for (int i = _unflushed.Count - 1; i >= 0; i--)
            {
                var (offset, old, oldLength) = _unflushed[i];
                inner.SetLength(oldLength);
                if (old.Length > 0)
                {
                    inner.WriteAsync(old, offset, useAsync: false, CancellationToken.None).AsTask().GetAwaiter().GetResult();
                }
            }
            _unflushed.Clear();
        }
    }
}
