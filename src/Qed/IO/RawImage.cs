using Qed.Formats;
using Qed.Image;

namespace Qed.IO;

/// <summary>A raw image: the file's bytes are the disk, its length is the size.</summary>
public sealed class RawImage : BlockDevice
{
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
            file.Lock(ImageLockSet.ForOpen(ImageFormats.Raw, new QedOpenOptions { ReadOnly = readOnly }));
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
            file.Lock(ImageLockSet.ForOpen(ImageFormats.Raw, new QedOpenOptions()));
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
    public override string FormatName => ImageFormats.Raw.Name;

    /// <inheritdoc />
    public override string FileName => _file.Path;

    /// <inheritdoc />
    protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _file.ReadZeroPaddedAsync(destination, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        _file.WriteAsync(source, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    /// <remarks><see cref="BlockDeviceCapabilities.Extents"/> where the file's holes can be found (<c>SEEK_HOLE</c>).</remarks>
    public override BlockDeviceCapabilities Capabilities =>
        (IsReadOnly
            ? BlockDeviceCapabilities.None
            : BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Discard | BlockDeviceCapabilities.Grow | BlockDeviceCapabilities.Shrink)
        | (_file.ReportsHoles ? BlockDeviceCapabilities.Extents : BlockDeviceCapabilities.None);

    /// <inheritdoc />
    /// <remarks>A hole punched in the file when unmapping is allowed, else the range zeroed in place; both with
    /// <c>fallocate</c>, falling back to writing zeros where the file system has no such mode.</remarks>
    protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
        _file.ZeroRangeAsync(offset, length, mayUnmap, useAsync, cancellationToken);

    /// <inheritdoc />
    /// <remarks>Punches a hole: the range reads as zeros afterwards.</remarks>
    protected internal override ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        _file.ZeroRangeAsync(offset, length, deallocate: true, useAsync, cancellationToken);

    /// <inheritdoc />
    /// <remarks>Truncates or extends the file (with a hole) and flushes, so the new length is durable.</remarks>
    protected internal override async ValueTask ResizeCoreAsync(long size, bool useAsync, CancellationToken cancellationToken)
    {
        _file.SetLength(size);
        Volatile.Write(ref _size, size);
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
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
