using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>A <see cref="FileAccessor"/> over an OS file handle, using <see cref="RandomAccess"/> (no shared file position).</summary>
/// <remarks>The handle carries QEMU's image locks (<see cref="Lock"/>); they are released when it is disposed.</remarks>
internal sealed class HandleFileAccessor : FileAccessor
{
    private readonly SafeFileHandle _handle;
    private readonly ImageLock _lock;

    private HandleFileAccessor(SafeFileHandle handle, string path, bool readOnly)
    {
        _handle = handle;
        _lock = new ImageLock(handle, path);
        Path = path;
        IsReadOnly = readOnly;
        LinuxFileLocks.DropFlock(handle);
    }

    public override string Path { get; }

    public override bool IsReadOnly { get; }

    /// <summary>Opens an existing file, translating the OS errors into one-line <see cref="QedException"/>s that name the file.</summary>
    public static HandleFileAccessor Open(string path, bool readOnly)
    {
        try
        {
            if (Directory.Exists(path))
            {
                throw new QedException($"Could not open '{path}': Is a directory");
            }
            var handle = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, FileOptions.None);
            return new HandleFileAccessor(handle, path, readOnly);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException && e is not QedException)
        {
            throw new QedException($"Could not open '{path}': {DescribeOpenError(e)}", e);
        }
    }

    /// <summary>
    /// Creates a file for writing, or empties an existing one, as <c>qemu-img create</c> does: the file is opened without
    /// truncating it, locked with <see cref="ImageLockSet.Create"/>, and only then truncated to zero, so that an image
    /// another process uses is refused and left untouched.
    /// </summary>
    /// <exception cref="QedLockException">Another process uses the file; it is unchanged.</exception>
    public static HandleFileAccessor Create(string path)
    {
        var file = OpenForOverwrite(path, FileMode.OpenOrCreate);
        try
        {
            file.SetLength(0);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens <paramref name="path"/> for writing without changing it and takes the locks <c>qemu-img create</c> takes
    /// (<see cref="ImageLockSet.Create"/>): while the returned file is open, QEMU and qed refuse to open it.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="mode"><see cref="FileMode.Open"/> for an existing file only, <see cref="FileMode.OpenOrCreate"/> to create a missing one.</param>
    /// <exception cref="QedLockException">Another process uses the file.</exception>
    /// <exception cref="QedException">The file cannot be opened or created.</exception>
    public static HandleFileAccessor OpenForOverwrite(string path, FileMode mode)
    {
        HandleFileAccessor file;
        try
        {
            if (Directory.Exists(path))
            {
                throw new QedException($"Could not create '{path}': Is a directory");
            }
            var handle = File.OpenHandle(path, mode, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, FileOptions.None);
            file = new HandleFileAccessor(handle, path, readOnly: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException && e is not QedException)
        {
            throw new QedException($"Could not create '{path}': {DescribeOpenError(e)}", e);
        }
        try
        {
            file.Lock(ImageLockSet.Create);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The OS handle (for callers that need file facts .NET does not give, such as a device's size).</summary>
    internal SafeFileHandle Handle => _handle;

    /// <summary>The image locks this handle holds now.</summary>
    public ImageLockSet Locks => _lock.Current;

    /// <summary>Moves this handle's image locks to <paramref name="locks"/> (see <see cref="ImageLock"/>).</summary>
    /// <exception cref="QedLockException">Another process's locks conflict; this handle's locks are as they were.</exception>
    public void Lock(ImageLockSet locks) => _lock.Apply(locks);

    internal static string DescribeOpenError(Exception e) => e switch
    {
        FileNotFoundException or DirectoryNotFoundException => "No such file or directory",
        UnauthorizedAccessException => "Permission denied",
        _ => e.Message,
    };

    public override long GetLength() => RandomAccess.GetLength(_handle);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
        useAsync ? RandomAccess.ReadAsync(_handle, buffer, offset, cancellationToken) : new(RandomAccess.Read(_handle, buffer.Span, offset));

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (useAsync)
        {
            return RandomAccess.WriteAsync(_handle, buffer, offset, cancellationToken);
        }
        RandomAccess.Write(_handle, buffer.Span, offset);
        return ValueTask.CompletedTask;
    }

    public override ValueTask ZeroRangeAsync(long offset, long length, bool deallocate, bool useAsync, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return ValueTask.CompletedTask;
        }
        // fallocate is a metadata change, quick next to writing the zeros, so both modes run it inline.
        cancellationToken.ThrowIfCancellationRequested();
        int errno = LinuxFileSpace.Zero(_handle, offset, length, deallocate);
        return errno == 0 ? ValueTask.CompletedTask : base.ZeroRangeAsync(offset, length, deallocate, useAsync, cancellationToken);
    }

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        // RandomAccess has no async flush; fsync is short next to the writes it follows, so both modes run it inline.
        RandomAccess.FlushToDisk(_handle);
        return ValueTask.CompletedTask;
    }

    public override (bool IsData, long Length) ProbeAllocation(long offset, long length) => FileHoles.Probe(_handle, offset, length);

    public override bool ReportsHoles => FileHoles.IsSupported;

    public override void SetLength(long length) => RandomAccess.SetLength(_handle, length);

    public override void Dispose()
    {
        if (!_handle.IsClosed)
        {
            _lock.Release();
        }
        _handle.Dispose();
    }
}
