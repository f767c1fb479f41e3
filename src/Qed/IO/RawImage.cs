using Qed.Image;

namespace Qed.IO;

/// <summary>A raw image: the file's bytes are the disk, its length is the size.</summary>
public sealed class RawImage : BlockDevice
{
    private const int ZeroChunk = 1 << 20;
    private readonly FileAccessor _file;
    private long _size;

    internal RawImage(FileAccessor file)
    {
        _file = file;
        _size = file.GetLength();
    }

    /// <summary>Opens an existing raw file, with QEMU's locks for a raw image (see <see cref="QedOpenOptions.Locking"/>).</summary>
    /// <exception cref="QedLockException">Another process uses the file in a way this open excludes.</exception>
    public static RawImage Open(string path, bool readOnly = false)
    {
        var file = HandleFileAccessor.Open(path, readOnly);
        try
        {
            file.Lock(ImageLockSet.ForOpen("raw", new QedOpenOptions { ReadOnly = readOnly }));
            return new RawImage(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates (or empties) a raw file of <paramref name="size"/> bytes, all a hole. An existing file is locked before it
    /// is truncated, as <c>qemu-img create</c> does, so one that QEMU or qed has open is refused and left as it was.
    /// </summary>
    /// <exception cref="QedLockException">Another process uses the file; it is unchanged.</exception>
    public static RawImage Create(string path, long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var file = HandleFileAccessor.Create(path);
        try
        {
            file.SetLength(size);
            // From here the file is an open writable raw image: qemu-img's create locks give way to its open locks.
            file.Lock(ImageLockSet.ForOpen("raw", new QedOpenOptions()));
            return new RawImage(file);
        }
        catch (Exception e)
        {
            // Leave nothing half-made behind: the file was created (empty) for this image only.
            file.Dispose();
            File.Delete(path);
            if (e is ArgumentException or IOException && e is not QedException)
            {
                throw new QedException($"Could not create '{path}': the file system refuses a length of {size} bytes ({e.Message})", e);
            }
            throw;
        }
    }

    /// <inheritdoc />
    public override long Size => Volatile.Read(ref _size);

    /// <inheritdoc />
    public override bool IsReadOnly => _file.IsReadOnly;

    /// <inheritdoc />
    public override string FormatName => "raw";

    /// <inheritdoc />
    public override string FileName => _file.Path;

    /// <inheritdoc />
    protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _file.ReadZeroPaddedAsync(destination, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _file.WriteAsync(source, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    protected internal override async ValueTask WriteZeroesCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] zeros = new byte[(int)Math.Min(length, ZeroChunk)];
        while (length > 0)
        {
            int n = (int)Math.Min(length, zeros.Length);
            await _file.WriteAsync(zeros.AsMemory(0, n), offset, useAsync, cancellationToken).ConfigureAwait(false);
            offset += n;
            length -= n;
        }
    }

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        _file.FlushAsync(useAsync, cancellationToken);

    /// <inheritdoc />
    /// <remarks>Holes of the file (<c>SEEK_HOLE</c>) are <see cref="BlockState.Zero"/>, with their file offset as for data: qemu-img map shows them as zero, present, at that offset.</remarks>
    protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var (isData, run) = _file.ProbeAllocation(offset, length);
        return new(new BlockStatus(offset, run, isData ? BlockState.Data : BlockState.Zero, offset));
    }

    /// <inheritdoc />
    protected override ValueTask CloseCoreAsync(bool useAsync)
    {
        _file.Dispose();
        return ValueTask.CompletedTask;
    }
}
