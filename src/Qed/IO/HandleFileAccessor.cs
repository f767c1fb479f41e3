using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>A <see cref="FileAccessor"/> over an OS file handle, using <see cref="RandomAccess"/> (no shared file position).</summary>
internal sealed class HandleFileAccessor : FileAccessor
{
    private readonly SafeFileHandle _handle;

    private HandleFileAccessor(SafeFileHandle handle, string path, bool readOnly)
    {
        _handle = handle;
        Path = path;
        IsReadOnly = readOnly;
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

    /// <summary>Creates (or truncates to zero) a file for writing.</summary>
    public static HandleFileAccessor Create(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                throw new QedException($"Could not create '{path}': Is a directory");
            }
            var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read, FileOptions.None);
            return new HandleFileAccessor(handle, path, readOnly: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException && e is not QedException)
        {
            throw new QedException($"Could not create '{path}': {DescribeOpenError(e)}", e);
        }
    }

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

    public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken)
    {
        // RandomAccess has no async flush; fsync is short next to the writes it follows, so both modes run it inline.
        RandomAccess.FlushToDisk(_handle);
        return ValueTask.CompletedTask;
    }

    public override void SetLength(long length) => RandomAccess.SetLength(_handle, length);

    public override void Dispose() => _handle.Dispose();
}
