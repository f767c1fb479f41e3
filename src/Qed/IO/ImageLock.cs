using System.Diagnostics;
using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>The QEMU image locks of one open file handle: takes, changes and tests them as QEMU's file driver does.</summary>
/// <remarks>
/// Applying a new <see cref="ImageLockSet"/> (QEMU's <c>raw_handle_perm_lock</c>):
/// <list type="number">
/// <item>Take a shared lock on byte 100 + bit for every permission held, then on byte 200 + bit for every permission
/// refused, keeping those of the current set (so nothing is dropped before the new set is known to be safe).</item>
/// <item>For every permission held, test byte 200 + bit: another user holding it refuses that permission
/// (<c>Failed to get "write" lock</c>).</item>
/// <item>For every permission refused, test byte 100 + bit: another user holding it holds that permission
/// (<c>Failed to get shared "write" lock</c>).</item>
/// <item>On success drop the bytes the new set no longer needs; on failure drop the bytes step 1 added, leaving the
/// current set as it was, and throw.</item>
/// </list>
/// Locking before testing means two users opening at once cannot both miss each other. The locks are dropped just before
/// the handle is closed (<see cref="Release"/>). Only the owner of the handle calls this, during open, create and close,
/// never concurrently.
/// </remarks>
internal sealed class ImageLock
{
    private const int HeldBase = 100;
    private const int RefusedBase = 200;

    private readonly SafeFileHandle _handle;
    private readonly string _path;
    private ImageLockSet _current;

    /// <summary>A handle with no image locks yet.</summary>
    public ImageLock(SafeFileHandle handle, string path)
    {
        _handle = handle;
        _path = path;
    }

    /// <summary>The set this handle holds now.</summary>
    public ImageLockSet Current => _current;

    /// <summary>Moves this handle's locks to <paramref name="wanted"/>; does nothing where OFD locks are not supported.</summary>
    /// <exception cref="QedLockException">Another user's locks conflict, or the file system refused a lock; the locks are as they were.</exception>
    public void Apply(ImageLockSet wanted)
    {
        if (wanted == _current || (wanted.IsEmpty && _current.IsEmpty) || !LinuxFileLocks.IsSupported)
        {
            return;
        }
        var union = new ImageLockSet(_current.Held | wanted.Held, _current.Refused | wanted.Refused);
        var added = new List<long>();
        try
        {
            LockBytes(HeldBase, union.Held & ~_current.Held, added);
            LockBytes(RefusedBase, union.Refused & ~_current.Refused, added);
            Test(RefusedBase, wanted.Held, shared: false);
            Test(HeldBase, wanted.Refused, shared: true);
        }
        catch
        {
            foreach (long offset in added)
            {
                // Releasing a lock this handle holds cannot conflict; a failure would leave at worst a stray shared byte until close.
                LinuxFileLocks.Unlock(_handle, offset);
            }
            throw;
        }
        UnlockBytes(HeldBase, union.Held & ~wanted.Held);
        UnlockBytes(RefusedBase, union.Refused & ~wanted.Refused);
        _current = wanted;
    }

    /// <summary>
    /// Drops every lock byte this handle holds; called just before the handle is closed. Closing alone is not enough:
    /// a child process that another thread forks shares the open file description until it calls exec, so the locks
    /// of a closed handle could outlive it for a moment. Unlocking acts on the description itself, as QEMU does when it
    /// closes an image. Never throws.
    /// </summary>
    public void Release()
    {
        if (_current.IsEmpty)
        {
            return;
        }
        UnlockBytes(HeldBase, _current.Held);
        UnlockBytes(RefusedBase, _current.Refused);
        _current = ImageLockSet.None;
    }

    private void LockBytes(int baseOffset, ImagePermissions permissions, List<long> added)
    {
        foreach (var permission in ImagePermissionNames.InBitOrder)
        {
            if ((permissions & permission) == 0)
            {
                continue;
            }
            long offset = baseOffset + ImagePermissionNames.Bit(permission);
            int errno = LinuxFileLocks.LockShared(_handle, offset);
            if (errno != 0)
            {
                // QEMU adds no "Is another process using the image" hint here: only its tests find other users.
                throw new QedLockException(WithReason(string.Create(CultureInfo.InvariantCulture, $"Failed to lock byte {offset}"), errno), _path, conflict: false);
            }
            added.Add(offset);
        }
    }

    private void Test(int baseOffset, ImagePermissions permissions, bool shared)
    {
        foreach (var permission in ImagePermissionNames.InBitOrder)
        {
            if ((permissions & permission) == 0)
            {
                continue;
            }
            int errno = LinuxFileLocks.TestExclusive(_handle, baseOffset + ImagePermissionNames.Bit(permission));
            if (errno != 0)
            {
                string message = $"Failed to get {(shared ? "shared " : "")}\"{ImagePermissionNames.Name(permission)}\" lock";
                throw new QedLockException(WithReason(message, errno), _path, conflict: true);
            }
        }
    }

    private void UnlockBytes(int baseOffset, ImagePermissions permissions)
    {
        foreach (var permission in ImagePermissionNames.InBitOrder)
        {
            if ((permissions & permission) != 0)
            {
                int errno = LinuxFileLocks.Unlock(_handle, baseOffset + ImagePermissionNames.Bit(permission));
                Debug.Assert(errno == 0, $"Releasing byte {baseOffset + ImagePermissionNames.Bit(permission)} of '{_path}' failed with errno {errno}");
            }
        }
    }

    /// <summary>QEMU's wording: the errno's text is appended unless it only says "somebody else holds it".</summary>
    private static string WithReason(string message, int errno) =>
        LinuxFileLocks.IsConflict(errno) ? message : $"{message}: {LinuxFileLocks.Describe(errno)}";
}
