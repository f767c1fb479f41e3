namespace Qed;

/// <summary>An image could not be locked: another process (QEMU, or a program using this library) uses it in a way that excludes this open, or the file system refused the lock.</summary>
/// <remarks>
/// The message is QEMU's (<c>Failed to get "write" lock</c>, <c>Failed to get shared "write" lock</c>,
/// <c>Failed to lock byte 100: ...</c>); <see cref="Hint"/> is QEMU's second line when another user was found.
/// Nothing on disk was changed.
/// </remarks>
public sealed class QedLockException : QedException
{
    /// <summary>Creates the exception for the file at <paramref name="path"/>.</summary>
    /// <param name="message">The one-line reason.</param>
    /// <param name="path">The file whose lock failed (for a backing file, its resolved path).</param>
    /// <param name="conflict">True when the test for other users' locks failed (QEMU then adds its hint line); false when taking a lock failed.</param>
    public QedLockException(string message, string path, bool conflict) : base(message)
    {
        ImagePath = path;
        IsConflict = conflict;
    }

    /// <summary>The file whose lock failed.</summary>
    public string ImagePath { get; }

    /// <summary>True when another user holds a conflicting lock (or the test for one failed); false when the file system refused to lock.</summary>
    public bool IsConflict { get; }

    /// <summary>QEMU's second line for a conflict, <c>Is another process using the image [PATH]?</c>; null otherwise. Callers print it on a line of its own after the message.</summary>
    public string? Hint => IsConflict ? $"Is another process using the image [{ImagePath}]?" : null;
}
